#!/usr/bin/env bash
# Times a training step of SmolLM2-135M (batch 4 x 256 tokens, f32, AdamW, loss on every
# position) in the candle trainer and in PyTorch on CPU (transformers' LlamaForCausalLM, the
# same shapes and thread count), for full fine-tuning and LoRA (rank 16, all linear layers),
# in one run, and prints tokens/s, peak memory and the ratio candle / PyTorch.
#
#   scripts/bench-train.sh [THREADS] [STEPS]
#
# First use installs torch, transformers and peft into ~/.cache/harness/torch-venv (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
steps=${2:-3}
venv=${HARNESS_CACHE:-$HOME/.cache/harness}/torch-venv
if ! "$venv/bin/python" -c 'import torch, transformers, peft' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers peft
fi
cargo build --release --quiet -p harness
cargo build --release --quiet -p trainer --example step_bench
model=$(target/release/harness fetch)
for mode in full lora; do
  candle=$(RAYON_NUM_THREADS=$threads target/release/examples/step_bench "$model" "$mode" 4 256 "$steps")
  torch=$(OMP_NUM_THREADS=$threads "$venv/bin/python" scripts/torch_train_step.py "$mode" 4 256 "$steps" "$threads")
  echo "$candle"
  echo "$torch"
  python3 - "$candle" "$torch" <<'PY'
import json, sys
c, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{c['mode']}: candle {c['tokens_per_second']:.1f} tok/s ({c['peak_rss_mb']:.0f} MB peak), "
      f"PyTorch {t['tokens_per_second']:.1f} tok/s ({t['peak_rss_mb']:.0f} MB peak), "
      f"ratio {c['tokens_per_second'] / t['tokens_per_second']:.2f}")
PY
done
