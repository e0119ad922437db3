"""An external trainer for `harness run --trainer external --train-cmd "python scripts/trl-train.py"`.

Trains one round of the loop with TRL and PEFT from the HARNESS_* environment variables
(README: "External trainer"), with the settings the built-in trainer uses:

- SFT (`HARNESS_METHOD=sft`): prompt-completion data, loss on the completion only.
- DPO (`HARNESS_METHOD=dpo`): sigmoid loss with `HARNESS_BETA` (no label smoothing: see below), plus the
  chosen responses' NLL weighted by `HARNESS_NLL_WEIGHT` (TRL's "sft" loss term).
- LoRA (`HARNESS_TUNING=lora`): one adapter over M0 continued across rounds: M1 starts a new
  adapter; later rounds load `HARNESS_INIT_ADAPTER` trainable, and DPO's reference is M0 plus
  that same adapter (TRL keeps a frozen copy of a loaded adapter, named "ref"). The
  adapter is written to `$HARNESS_OUT/adapter` with `base_model_name_or_path` naming M0.
- Full fine-tuning: starts from M_{t-1}'s `hf/` folder (M0 for M1) and writes `$HARNESS_OUT/hf`.

M0 (`HARNESS_BASE_MODEL`) is a Hugging Face folder, or a GGUF file that transformers
dequantizes (`gguf_file=`; needs the `gguf` package). This script writes no GGUF: pair it with
a server (`--lora-hotload`, `--serve-hook`), or set LLAMA_CPP_CONVERT to llama.cpp's
convert_hf_to_gguf.py and it also writes `$HARNESS_OUT/model.gguf` (the merged model, f16)
for the embedded engine.

Precision: float32, as the built-in trainer (TRL's configs otherwise turn bf16 autocast on
whenever fp16 is off, and transformers refuses bf16 on a GPU without it); `--bf16` trains in
bf16 autocast. Dropout: LoRA dropout in SFT; none in DPO (TRL's `disable_dropout`, set here
explicitly; the built-in trainer does the same).

Environment: a virtual environment with `torch transformers peft trl datasets` (and `gguf` for
GGUF inputs). Written against TRL 1.16, PEFT 0.21, transformers 5.24.
"""

import json
import os
import subprocess
import sys
import tempfile


def env(name, default=None):
    value = os.environ.get(name, "")
    if value == "" and default is None:
        sys.exit(f"trl-train.py: {name} is not set (run it through harness run --train-cmd)")
    return value if value != "" else default


def load_causal_lm(path):
    """A causal LM and its tokenizer from a Hugging Face folder or a GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.isfile(path) and path.endswith(".gguf"):
        folder, name = os.path.split(path)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # The weights are dequantized to float32; transformers still marks the model as
        # GGUF-quantized, which its Trainer refuses to train.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = path
        model.name_or_path = path
    else:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def read_dataset(path, dpo):
    """The round's JSON Lines as a datasets.Dataset in TRL's formats. A chat prompt (a list
    of messages) makes the completions assistant messages (TRL's conversational form)."""
    from datasets import Dataset

    columns = ["prompt", "chosen", "rejected"] if dpo else ["prompt", "completion"]
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            missing = [c for c in columns if c not in record]
            if missing:
                sys.exit(f"{path}:{number}: no field {missing[0]}")
            row = {c: record[c] for c in columns}
            if isinstance(row["prompt"], list):
                for c in columns[1:]:
                    row[c] = [{"role": "assistant", "content": row[c]}]
            rows.append(row)
    return Dataset.from_list(rows)


def common_args(bf16):
    """TrainingArguments fields shared by SFT and DPO."""
    schedule = env("HARNESS_SCHEDULE", "cosine")
    return dict(
        bf16=bf16,
        fp16=False,
        output_dir=tempfile.mkdtemp(prefix="trl-train-"),
        learning_rate=float(env("HARNESS_LR")),
        num_train_epochs=float(env("HARNESS_EPOCHS")),
        per_device_train_batch_size=int(env("HARNESS_BATCH_SIZE")),
        gradient_accumulation_steps=int(env("HARNESS_GRAD_ACCUM", "1")),
        # transformers 5: a float below 1 is the share of steps in warmup.
        warmup_steps=float(env("HARNESS_WARMUP_RATIO", "0.1")),
        lr_scheduler_type="constant_with_warmup" if schedule == "constant" else "cosine",
        max_grad_norm=float(env("HARNESS_MAX_GRAD_NORM", "1.0")) or 1e9,
        weight_decay=float(env("HARNESS_WEIGHT_DECAY", "0")),
        seed=int(env("HARNESS_SEED", "42")),
        max_length=int(env("HARNESS_MAX_LEN", "1024")),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not __import__("torch").cuda.is_available(),
    )


def lora_model(base):
    """M0 with the round's trainable adapter: new for M1, else HARNESS_INIT_ADAPTER. For
    DPO, TRL keeps a frozen copy of a loaded adapter as the reference ("ref"), so the
    reference is M0 + A_{t-1}, as in the built-in trainer."""
    from peft import LoraConfig, PeftModel, get_peft_model

    init_adapter = env("HARNESS_INIT_ADAPTER", "")
    if init_adapter:
        return PeftModel.from_pretrained(base, init_adapter, is_trainable=True)
    targets = env("HARNESS_LORA_TARGETS", "all-linear")
    config = LoraConfig(
        r=int(env("HARNESS_LORA_RANK")),
        lora_alpha=float(env("HARNESS_LORA_ALPHA")),
        lora_dropout=float(env("HARNESS_LORA_DROPOUT")),
        target_modules=targets if targets == "all-linear" else targets.split(","),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config)


def reference_model(lora):
    """DPO's reference when `--dpo-ref m0|m1` names one (HARNESS_REFERENCE: M0, or M1's
    model.gguf, whose folder holds adapter/ or hf/); None: TRL's default, the start model."""
    reference = env("HARNESS_REFERENCE", "")
    if not reference:
        return None
    base = env("HARNESS_BASE_MODEL")
    if os.path.abspath(reference) == os.path.abspath(base):
        return load_causal_lm(base)[0]
    folder = os.path.dirname(reference)
    if lora:
        from peft import PeftModel

        model = load_causal_lm(base)[0]
        return PeftModel.from_pretrained(model, os.path.join(folder, "adapter")).merge_and_unload()
    return load_causal_lm(os.path.join(folder, "hf"))[0]


def train(dpo, model, tokenizer, data, ref_model, bf16):
    if dpo:
        from trl import DPOConfig, DPOTrainer

        nll = float(env("HARNESS_NLL_WEIGHT", "0"))
        if float(env("HARNESS_LABEL_SMOOTHING", "0")) > 0:
            # TRL >= 1 applies label_smoothing to the robust and EXO losses only and would
            # silently train plain DPO.
            sys.exit("trl-train.py: --label-smoothing (conservative DPO) has no equivalent in "
                     "this TRL's sigmoid loss; run without it or with the built-in trainer")
        config = DPOConfig(
            beta=float(env("HARNESS_BETA")),
            # The chosen responses' mean token NLL, weighted (the built-in --nll-weight).
            loss_type=["sigmoid", "sft"] if nll > 0 else ["sigmoid"],
            loss_weights=[1.0, nll] if nll > 0 else None,
            disable_dropout=True,
            **common_args(bf16),
        )
        trainer = DPOTrainer(
            model=model, ref_model=ref_model, args=config, train_dataset=data,
            processing_class=tokenizer,
        )
    else:
        from trl import SFTConfig, SFTTrainer

        config = SFTConfig(completion_only_loss=True, **common_args(bf16))
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    return trainer


def write_gguf(model, tokenizer, out):
    """`$HARNESS_OUT/model.gguf`: the merged model through llama.cpp's converter."""
    script = os.environ.get("LLAMA_CPP_CONVERT", "")
    if not script:
        sys.exit("trl-train.py: model.gguf is needed (embedded engine): set LLAMA_CPP_CONVERT "
                 "to llama.cpp's convert_hf_to_gguf.py, or sample through a server")
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    with tempfile.TemporaryDirectory() as folder:
        merged.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        subprocess.run(
            [sys.executable, script, folder, "--outfile", os.path.join(out, "model.gguf"),
             "--outtype", "f16"],
            check=True,
        )


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bf16", action="store_true", help="train in bf16 autocast (default: float32)")
    args = parser.parse_args()
    dpo = env("HARNESS_METHOD") == "dpo"
    lora = env("HARNESS_TUNING") == "lora"
    out = env("HARNESS_OUT")
    needs = [n for n in env("HARNESS_NEEDS", "").split(",") if n]
    data = read_dataset(env("HARNESS_DATA"), dpo)
    previous = env("HARNESS_PREVIOUS", "")
    start = env("HARNESS_BASE_MODEL") if lora or not previous else os.path.join(previous, "hf")
    model, tokenizer = load_causal_lm(start)
    if lora:
        model = lora_model(model)
    ref_model = reference_model(lora) if dpo else None
    print(f"trl-train.py: round {env('HARNESS_ROUND')} {'DPO' if dpo else 'SFT'} "
          f"{'LoRA' if lora else 'full'} on {len(data)} records from {start}", flush=True)
    trainer = train(dpo, model, tokenizer, data, ref_model, args.bf16)
    # Training alone (TRL's train_runtime: the steps, DPO's reference inside them), the span the
    # built-in trainer's train_summary.json calls train_seconds (scripts/bench-train-loop.sh).
    runtime = next(e["train_runtime"] for e in trainer.state.log_history if "train_runtime" in e)
    print(f"trl-train.py: train_runtime {runtime:.2f} s, {trainer.state.global_step} steps", flush=True)
    # TRL's per-step log (loss, learning rate, grad norm, DPO rewards), one JSON line per step,
    # as the built-in trainer's train_log.jsonl.
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "train_log.jsonl"), "w") as log:
        for entry in trainer.state.log_history:
            if "loss" in entry:
                log.write(json.dumps(entry) + "\n")
    model = trainer.model
    if lora:
        model.save_pretrained(os.path.join(out, "adapter"), selected_adapters=["default"])
    else:
        model.save_pretrained(os.path.join(out, "hf"))
        tokenizer.save_pretrained(os.path.join(out, "hf"))
    if "model.gguf" in needs:
        write_gguf(model, tokenizer, out)


if __name__ == "__main__":
    main()
