"""Makes trainer/tests/fixtures/trl/: the golden values of trainer/tests/trl_golden.rs.

Two tiny random Llamas (a policy and a DPO reference, Hugging Face folders), a fixed batch of
token ids, and what TRL computes on it: the DPO loss, mean rewards, margin, accuracy and
log-probabilities (sigmoid loss; once plain, once with another beta and the chosen
responses' NLL term), and the SFT loss on the chosen sequences with the loss on completions
only. (Label smoothing is not compared: TRL 1.16 applies it to the robust and EXO losses
only, while --label-smoothing here is conservative DPO on the sigmoid loss, the form older
TRL versions had.) TRL runs its own code path: its collators build the batch, `compute_loss` computes the
loss and records the metrics.

Usage: python scripts/make_trl_fixture.py [OUT]   (in a virtual environment with torch,
transformers, trl, datasets and tokenizers; scripts/make-trl-fixture.sh makes one).
"""

import json
import os
import sys
import tempfile

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

VOCAB = 32

# (prompt, chosen, rejected) token ids; lengths differ so padding and masks matter.
PAIRS = [
    ([5, 9, 12], [7, 3, 20, 1], [8, 1]),
    ([4, 17, 22, 30, 6], [11, 1], [25, 14, 9, 2, 1]),
    ([13, 2], [19, 28, 10, 1], [16, 21, 1]),
]


def tiny_model(seed):
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=500.0,  # not the default, so a reader that drops it fails the test
        tie_word_embeddings=False,
        attention_bias=False,
        # Large weights, so log-probabilities are far from uniform and the two models differ.
        initializer_range=0.4,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.3 * torch.randn_like(param))
    return model.eval()


def tokenizer():
    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t2"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t1", unk_token="t2")


def dpo_values(beta, nll_weight):
    """TRL's DPO values on fresh copies of the two models (a trainer may change the models
    it is given)."""
    from trl import DPOConfig, DPOTrainer

    policy, reference = tiny_model(0), tiny_model(1)
    examples = [{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r} for p, c, r in PAIRS]
    args = DPOConfig(
        output_dir=tempfile.mkdtemp(),
        beta=beta,
        loss_type=["sigmoid", "sft"] if nll_weight else ["sigmoid"],
        loss_weights=[1.0, nll_weight] if nll_weight else None,
        per_device_train_batch_size=len(PAIRS),
        report_to=[],
        use_cpu=True,
        # transformers 5 turns bf16 autocast on by default where the CPU has it; the
        # fixture compares float32 arithmetic.
        bf16=False,
    )
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=args,
        # A stand-in the constructor prepares; the batch below is built from ids directly.
        train_dataset=Dataset.from_list([{"prompt": "t5 t9", "chosen": " t7", "rejected": " t8"}]),
        processing_class=tokenizer(),
    )
    batch = trainer.data_collator(examples)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    # Recorded under "eval": the models are in eval mode (no dropout either way).
    recorded = trainer._metrics["train"] or trainer._metrics["eval"]
    metrics = {k: v[-1] for k, v in recorded.items()}
    keep = ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "logps/chosen", "logps/rejected"]
    return {"beta": beta, "label_smoothing": 0.0, "nll_weight": nll_weight,
            "loss": loss, **{k: metrics[k] for k in keep}}


def sft_values():
    from trl import SFTConfig, SFTTrainer

    policy = tiny_model(0)
    examples = [
        {"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)} for p, c, _ in PAIRS
    ]
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        completion_only_loss=True,
        per_device_train_batch_size=len(PAIRS),
        report_to=[],
        use_cpu=True,
        bf16=False,
    )
    trainer = SFTTrainer(
        model=policy, args=args, train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer(),
    )
    # The prepared dataset: TRL builds the labels (-100 on prompt tokens) while preparing it.
    prepared = [trainer.train_dataset[i] for i in range(len(examples))]
    assert [row["input_ids"] for row in prepared] == [e["input_ids"] for e in examples]
    batch = trainer.data_collator(prepared)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    return {"loss": loss}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "trainer/tests/fixtures/trl"
    os.makedirs(out, exist_ok=True)
    policy, reference = tiny_model(0), tiny_model(1)
    policy.save_pretrained(os.path.join(out, "policy"), safe_serialization=True)
    reference.save_pretrained(os.path.join(out, "reference"), safe_serialization=True)
    import transformers
    import trl

    expected = {
        "made_by": "scripts/make_trl_fixture.py",
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__},
        "pairs": [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS],
        "dpo": [dpo_values(0.1, 0.0), dpo_values(0.3, 0.5)],
        "sft": sft_values(),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
