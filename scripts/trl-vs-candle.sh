#!/usr/bin/env bash
# The external trainer (scripts/trl-train.py: TRL 1.16 + PEFT) and the built-in one (`harness
# train`) on the same small data set, from the same adapter (PEFT's initialisation), with the
# same settings (float32, dropout 0, constant learning rate, no warm-up, the whole data set in
# each step so that shuffling cannot differ): SFT and DPO loss curves printed side by side,
# failing when a step differs by more than TOLERANCE (relative; default 0.001).
#
#   scripts/trl-vs-candle.sh [TOLERANCE] [STEPS]
#
# First use installs torch, transformers, PEFT and TRL (scripts/torch-venv.sh, several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
tolerance=${1:-0.001}
steps=${2:-6}
# shellcheck source=scripts/torch-lib.sh
source scripts/torch-lib.sh
"$py" scripts/peft_roundtrip.py data "$work"
"$py" scripts/trl_vs_candle.py init "$model" "$work/init" 8 16 2>/dev/null
for method in sft dpo; do
  lr=$([ "$method" = sft ] && echo 1e-3 || echo 2e-4)
  $H train --method "$method" --model "$model" --data "$work/$method.jsonl" \
    --continue-adapter "$work/init" --lora-rank 8 --lora-alpha 16 --lora-dropout 0 \
    --lr "$lr" --epochs "$steps" --batch-size 16 --warmup-ratio 0 --schedule constant \
    --max-grad-norm 1 --weight-decay 0 --beta 0.1 --seed 7 --gguf-type none \
    --out "$work/candle-$method" > "$work/candle-$method.log" 2>&1 \
    || { cat "$work/candle-$method.log"; exit 1; }
  HARNESS_METHOD=$method HARNESS_TUNING=lora HARNESS_ROUND=2 HARNESS_OUT="$work/trl-$method" \
    HARNESS_DATA="$work/$method.jsonl" HARNESS_BASE_MODEL="$model" HARNESS_INIT_ADAPTER="$work/init" \
    HARNESS_LORA_RANK=8 HARNESS_LORA_ALPHA=16 HARNESS_LORA_DROPOUT=0 HARNESS_LR=$lr \
    HARNESS_EPOCHS=$steps HARNESS_BATCH_SIZE=16 HARNESS_WARMUP_RATIO=0 HARNESS_SCHEDULE=constant \
    HARNESS_MAX_GRAD_NORM=1 HARNESS_WEIGHT_DECAY=0 HARNESS_BETA=0.1 HARNESS_SEED=7 \
    "$py" scripts/trl-train.py > "$work/trl-$method.log" 2>&1 \
    || { tail -30 "$work/trl-$method.log"; exit 1; }
  "$py" scripts/trl_vs_candle.py compare "$tolerance" "$work/candle-$method/train_log.jsonl" \
    "$work/trl-$method/train_log.jsonl" "$method"
done
