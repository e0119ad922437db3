#!/usr/bin/env bash
# The loop's own training, the built-in trainer (`harness train`, candle) against TRL + PEFT on
# PyTorch (scripts/trl-train.py, the loop's `--trainer external`), on a finished run's real data
# and with the loop's settings (LoRA rank 16, alpha 32, all linear layers, batch 4, warm-up 0.1,
# cosine, float32, the same thread count):
#
#   sft: M1's training, a new adapter on RUN/round-1/gold.jsonl for 3 epochs (lr 2e-4, dropout
#        0.05, loss on the responses only);
#   dpo: a DPO round on RUN/dpo/round-2/data.jsonl for 1 epoch (lr 5e-6, beta 0.1), continuing
#        an adapter (the same PEFT-initialised one for both), the reference being M0 + that
#        adapter: candle scores it once before the steps, TRL inside each step.
#
# Prints, per job and round, each engine's process wall time (loading, tokenising, training,
# writing) and training alone (candle: train_summary.json's train_seconds; TRL: its
# train_runtime), and the ratio TRL / candle of training alone (above 1: candle is faster);
# the summary gives medians over ROUNDS (default 1). Engines run one after the other, never
# at once (the machine has 2 cores).
#
#   scripts/bench-train-loop.sh RUN [ROUNDS]     # RUN: a `harness run` directory (defaults)
#
# First use installs torch, transformers, PEFT and TRL (scripts/torch-venv.sh, several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: scripts/bench-train-loop.sh RUN_DIR [ROUNDS]}
rounds=${2:-1}
for f in round-1/gold.jsonl dpo/round-2/data.jsonl; do
  [ -f "$run/$f" ] || { echo "$run/$f: missing (a finished default \`harness run\` has it)" >&2; exit 1; }
done
# shellcheck source=scripts/torch-lib.sh
source scripts/torch-lib.sh
threads=$(nproc)
"$py" scripts/trl_vs_candle.py init "$model" "$work/init" 16 32 2>/dev/null

# One job on one engine; prints "ENGINE JOB WALL TRAIN" (seconds).
bench() {
  local engine=$1 job=$2 data lr epochs adapter=() init="" dropout=0.05
  case $job in
    sft) data=$run/round-1/gold.jsonl lr=2e-4 epochs=3 ;;
    dpo) data=$run/dpo/round-2/data.jsonl lr=5e-6 epochs=1 init=$work/init
         adapter=(--continue-adapter "$init") ;;
  esac
  local out=$work/$engine-$job start end train
  rm -rf "$out"
  start=$(date +%s.%N)
  if [ "$engine" = candle ]; then
    $H train --method "$job" --model "$model" --data "$data" "${adapter[@]}" --lora-rank 16 \
      --lora-alpha 32 --lora-dropout "$dropout" --lr "$lr" --epochs "$epochs" --batch-size 4 \
      --warmup-ratio 0.1 --schedule cosine --beta 0.1 --seed 42 --threads "$threads" \
      --gguf-type none --adapter-type f16 --out "$out" > "$out.log" 2>&1 \
      || { tail -30 "$out.log"; exit 1; }
    end=$(date +%s.%N)
    train=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["train_seconds"])' \
      "$out/train_summary.json")
  else
    HARNESS_METHOD=$job HARNESS_TUNING=lora HARNESS_ROUND=2 HARNESS_OUT=$out HARNESS_DATA=$data \
      HARNESS_BASE_MODEL=$model HARNESS_INIT_ADAPTER=$init HARNESS_LORA_RANK=16 \
      HARNESS_LORA_ALPHA=32 HARNESS_LORA_DROPOUT=$dropout HARNESS_LR=$lr HARNESS_EPOCHS=$epochs \
      HARNESS_BATCH_SIZE=4 HARNESS_WARMUP_RATIO=0.1 HARNESS_SCHEDULE=cosine HARNESS_BETA=0.1 \
      HARNESS_SEED=42 OMP_NUM_THREADS=$threads \
      "$py" scripts/trl-train.py > "$out.log" 2>&1 || { tail -30 "$out.log"; exit 1; }
    end=$(date +%s.%N)
    train=$(sed -nE 's/^trl-train.py: train_runtime ([0-9.]+) s.*/\1/p' "$out.log")
  fi
  echo "$engine $job $(python3 -c "print(f'{$end - $start:.1f}')") $train"
}

results=()
for round in $(seq "$rounds"); do
  for job in sft dpo; do
    for engine in candle trl; do
      line=$(bench "$engine" "$job")
      echo "round $round: $line (engine job wall train, seconds)"
      results+=("$line")
    done
  done
done
python3 - "${results[@]}" <<'PY'
import statistics, sys
rows = [a.split() for a in sys.argv[1:]]
for job in ("sft", "dpo"):
    def times(engine, col):
        return [float(r[col]) for r in rows if r[0] == engine and r[1] == job]
    ratios = [t / c for c, t in zip(times("candle", 3), times("trl", 3))]
    med = statistics.median
    print(f"{job}: training alone candle {med(times('candle', 3)):.1f} s, TRL "
          f"{med(times('trl', 3)):.1f} s, ratio TRL/candle {med(ratios):.2f}; whole process "
          f"candle {med(times('candle', 2)):.1f} s, TRL {med(times('trl', 2)):.1f} s "
          f"(medians of {len(ratios)})")
PY
