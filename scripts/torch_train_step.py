"""Reference for scripts/bench-train.sh: times a causal-LM training step of SmolLM2-135M in
PyTorch on CPU (transformers' LlamaForCausalLM, f32, AdamW), batch B x T random tokens, the
same shapes and thread count as the candle trainer's step_bench. Prints one JSON line.

The model is built from SmolLM2-135M's configuration with random weights: the model hub is
not reachable here, and a step's cost does not depend on the weights' values.
"""

import json
import resource
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    seq = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).float()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"),
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    times = []
    for step in range(steps + 1):
        tokens = torch.randint(0, config.vocab_size, (batch, seq))
        start = time.perf_counter()
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step > 0:
            times.append(time.perf_counter() - start)
    step_s = sum(times) / len(times)
    print(
        json.dumps(
            {
                "engine": "pytorch",
                "torch": torch.__version__,
                "mode": mode,
                "batch": batch,
                "seq": seq,
                "threads": threads,
                "step_seconds": step_s,
                "tokens_per_second": batch * seq / step_s,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
