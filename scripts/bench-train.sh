#!/usr/bin/env bash
# Times a training step of SmolLM2-135M (batch 4 x 256 tokens, f32, AdamW, loss on every
# position) in the candle trainer and in PyTorch on CPU (transformers' LlamaForCausalLM, the
# same shapes and thread count), for full fine-tuning and LoRA (rank 16, all linear layers),
# in one run, and prints tokens/s, peak memory and the ratio candle / PyTorch.
#
#   scripts/bench-train.sh [THREADS] [STEPS] [ROUNDS]
#   B=4 T=160 MODES=lora scripts/bench-train.sh   # the loop's batches: 4 arith SFT examples
#                                                 # (B=8: a DPO step's 4 pairs) of ~160 tokens
#
# Each round runs the two engines back to back (STEPS timed steps each, after one warm-up
# step); the summary gives the median over ROUNDS (default 3) of each engine's tokens/s and of
# the per-round ratio. This machine's speed drifts by 15-25% over minutes, so a ratio is only
# taken between runs made next to each other.
#
# First use installs torch, transformers and peft into ~/.cache/harness/torch-venv
# (scripts/torch-venv.sh; several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
steps=${2:-3}
rounds=${3:-3}
B=${B:-4}
T=${T:-256}
MODES=${MODES:-full lora}
py=$(scripts/torch-venv.sh)
cargo build --release --quiet -p harness
cargo build --release --quiet -p trainer --example step_bench
model=$(target/release/harness fetch)
for mode in $MODES; do
  runs=()
  for _ in $(seq "$rounds"); do
    candle=$(RAYON_NUM_THREADS=$threads target/release/examples/step_bench "$model" "$mode" "$B" "$T" "$steps")
    torch=$(OMP_NUM_THREADS=$threads "$py" scripts/torch_train_step.py "$mode" "$B" "$T" "$steps" "$threads" 2>/dev/null)
    echo "$candle"
    echo "$torch"
    runs+=("$candle" "$torch")
  done
  python3 - "${runs[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
pairs = list(zip(runs[0::2], runs[1::2]))
for i, (c, t) in enumerate(pairs, 1):
    print(f"  round {i}: candle {c['tokens_per_second']:.1f} tok/s, PyTorch {t['tokens_per_second']:.1f} tok/s, "
          f"ratio {c['tokens_per_second'] / t['tokens_per_second']:.2f}")
med = lambda xs: statistics.median(xs)
c_tps = med([c['tokens_per_second'] for c, _ in pairs])
t_tps = med([t['tokens_per_second'] for _, t in pairs])
ratio = med([c['tokens_per_second'] / t['tokens_per_second'] for c, t in pairs])
c_mb = max(c['peak_rss_mb'] for c, _ in pairs)
t_mb = max(t['peak_rss_mb'] for _, t in pairs)
print(f"{runs[0]['mode']}: candle {c_tps:.1f} tok/s ({c_mb:.0f} MB peak), PyTorch {t_tps:.1f} tok/s "
      f"({t_mb:.0f} MB peak), ratio {ratio:.2f} (medians of {len(pairs)} rounds)")
PY
done
