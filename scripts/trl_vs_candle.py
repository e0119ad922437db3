"""Helpers of scripts/trl-vs-candle.sh.

    python scripts/trl_vs_candle.py init M0.gguf DIR RANK ALPHA   a new LoRA adapter, made by PEFT
    python scripts/trl_vs_candle.py compare TOLERANCE CANDLE_LOG TRL_LOG LABEL

`init` writes PEFT's own initialisation of an all-linear adapter (A Kaiming-uniform, B zero,
dropout 0), so that both trainers start from the same weights. `compare` prints the two loss
curves step by step and fails when a step's losses differ by more than TOLERANCE (relative).
"""

import json
import sys


def init(gguf, out, rank, alpha):
    import os

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    folder, name = os.path.split(gguf)
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=0.0,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(out)


def losses(path):
    with open(path) as f:
        return [json.loads(line)["loss"] for line in f if line.strip()]


def compare(tolerance, candle_log, trl_log, label):
    candle, trl = losses(candle_log), losses(trl_log)
    if len(candle) != len(trl):
        sys.exit(f"{label}: {len(candle)} candle steps against {len(trl)} TRL steps")
    worst = 0.0
    print(f"{label}: step, candle loss, TRL loss, relative difference")
    for step, (c, t) in enumerate(zip(candle, trl), 1):
        rel = abs(c - t) / max(abs(t), 1e-12)
        worst = max(worst, rel)
        print(f"  {step:3d}  {c:.5f}  {t:.5f}  {rel:.4f}")
    verdict = "ok" if worst <= float(tolerance) else "FAILED"
    print(f"{label}: max relative difference {worst:.4f} over {len(trl)} steps "
          f"(tolerance {tolerance}) {verdict}", flush=True)
    if verdict != "ok":
        sys.exit(1)


if __name__ == "__main__":
    {"init": init, "compare": compare}[sys.argv[1]](*sys.argv[2:])
