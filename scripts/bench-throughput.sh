#!/usr/bin/env bash
# Sampling throughput of `harness bench` against llama.cpp's own `llama-batched-bench`, in one
# run on one machine, at the same parallelism and generation length:
#   1. llama-batched-bench: PARALLEL sequences sharing one prompt (-pps), TOKENS new tokens each;
#   2. harness bench, embedded llama.cpp: gsm8k prompts, n=PARALLEL, TOKENS new tokens each
#      (--ignore-eos, as the reference), PARALLEL sequences;
#   3. harness bench, OpenAI backend, against llama-server started with PARALLEL slots.
# Throughput is generated tokens per second of wall time, prompt processing included, for all
# three. Prints each figure and the ratios to the reference. All three use the same attention
# kernel: FA=off (default, as `harness bench`) or FA=on (llama.cpp's flash attention).
#
#   scripts/bench-throughput.sh                 # PARALLEL=8 TOKENS=256 LIMIT=8 FA=off
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PARALLEL:-8}
TG=${TOKENS:-256}
LIMIT=${LIMIT:-8}
THREADS=${THREADS:-$(nproc)}
FA=${FA:-off}
PP=${PROMPT_TOKENS:-160}   # about the length of a chat-templated gsm8k prompt

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

column() { # CSV file, column name -> value of the first row
  python3 -c 'import csv,sys; r=next(csv.DictReader(open(sys.argv[1]))); print(r[sys.argv[2]])' "$1" "$2"
}

echo "== llama-batched-bench (reference): npl=$P npp=$PP (shared) ntg=$TG threads=$THREADS fa=$FA"
"$bin/llama-batched-bench" -m "$model" -c $((P * (PP + TG) + 256)) -b 512 -ub 512 -fa "$FA" \
  -npp "$PP" -ntg "$TG" -npl "$P" -pps -t "$THREADS" -tb "$THREADS" > "$work/ref.txt" 2>/dev/null
grep '^|' "$work/ref.txt"
ref=$(awk -F'|' '/^\|/ && $2+0 > 0 { printf "%.2f", ($4 * $3) / $10 }' "$work/ref.txt")
echo "reference: $ref generated tokens/s"

echo "== harness bench, embedded llama.cpp"
$H bench --task gsm8k --limit "$LIMIT" --n "$P" --max-tokens "$TG" --ignore-eos \
  --parallel "$P" --threads "$THREADS" --flash-attn "$FA" --out "$work/llamacpp" | tail -1
local_tps=$(column "$work/llamacpp/summary.csv" tokens_per_s)

echo "== harness bench, OpenAI backend against llama-server -np $P"
start_llama_server -np "$P" -c $((P * 2048)) -t "$THREADS" -tb "$THREADS" -fa "$FA"
$H bench --backend openai --base-url "$base_url" --model smollm2 --task gsm8k \
  --limit "$LIMIT" --n "$P" --max-tokens "$TG" --ignore-eos --concurrency "$P" \
  --out "$work/openai" | tail -1
remote_tps=$(column "$work/openai/summary.csv" tokens_per_s)

python3 - "$ref" "$local_tps" "$remote_tps" <<'PY'
import sys
ref, local, remote = map(float, sys.argv[1:])
print(f"reference llama-batched-bench : {ref:8.1f} tok/s")
print(f"harness, embedded llama.cpp    : {local:8.1f} tok/s  ratio {local / ref:.3f}")
print(f"harness, OpenAI -> llama-server: {remote:8.1f} tok/s  ratio {remote / ref:.3f}")
PY
