#!/usr/bin/env bash
# Trains LoRA adapters with `harness train` (SFT and DPO; all-linear and an explicit list of
# projections, as the loop's rounds are trained) and loads each with PEFT onto M0 (transformers
# reading M0's GGUF), comparing its logits with the harness's merged export
# (scripts/peft_roundtrip.py prints the numbers and fails past its bound).
#
#   scripts/peft-roundtrip.sh
#
# First use installs torch, transformers, PEFT and TRL (scripts/torch-venv.sh, several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/torch-lib.sh
source scripts/torch-lib.sh
"$py" scripts/peft_roundtrip.py data "$work"
train() { # NAME METHOD TARGETS [EXTRA...]
  local name=$1 method=$2 targets=$3
  shift 3
  $H train --method "$method" --model "$model" --data "$work/$method.jsonl" \
    --lora-rank 8 --lora-alpha 16 --lora-targets "$targets" --epochs 3 --batch-size 4 \
    --warmup-ratio 0 --schedule constant --gguf-type none --export-hf --out "$work/$name" "$@" \
    > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
}
train sft-all-linear sft all-linear --lr 1e-3
train sft-q-v-down sft q_proj,v_proj,down_proj --lr 1e-3
train dpo-all-linear dpo all-linear --lr 2e-4
train dpo-k-o-gate-up dpo k_proj,o_proj,gate_proj,up_proj --lr 2e-4
"$py" scripts/peft_roundtrip.py check "$model" "$work"/sft-all-linear "$work"/sft-q-v-down \
  "$work"/dpo-all-linear "$work"/dpo-k-o-gate-up
