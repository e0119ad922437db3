#!/usr/bin/env bash
# Sampling throughput of the embedded engine against llama.cpp's own tools, in one run on one
# machine, on the self-improvement loop's workload, sweeping the parallelism of all three:
#   1. harness bench, embedded llama.cpp, --parallel P, and --parallel auto (the default);
#   2. harness bench, OpenAI backend, against llama-server started with P slots (-np P);
#   3. llama-batched-bench, B = P sequences sharing one prompt of the workload's mean prompt
#      length (the reference: llama.cpp's batched decoding with no scheduling at all).
# The workload (default): TASK=arith, LIMIT=16 problems, greedy + N=8 samples of each,
# TOKENS=64 new tokens per response (--ignore-eos, so every engine generates the same count).
# Throughput is generated tokens per second of wall time, prompt processing included.
# Prints every figure, then each engine's best and the ratios of the embedded engine (at its
# default, --parallel auto, and at its best) to the others' best.
#
#   scripts/bench-throughput.sh                    # the loop's workload, SWEEP="8 16 32 64 128"
#   CASE=long scripts/bench-throughput.sh          # 8 gsm8k problems, 256 tokens (the old case)
#   SWEEP="8 32" FA=on scripts/bench-throughput.sh # other parallelism, flash attention on
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CASE:-loop}" = long ]; then
  TASK=${TASK:-gsm8k} LIMIT=${LIMIT:-8} TOKENS=${TOKENS:-256}
fi
TASK=${TASK:-arith}
LIMIT=${LIMIT:-16}
N=${N:-8}
TOKENS=${TOKENS:-64}
SWEEP=${SWEEP:-8 16 32 64 128}
THREADS=${THREADS:-$(nproc)}
FA=${FA:-off}

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

column() { # CSV file, column name -> value of the first row
  python3 -c 'import csv,sys; r=next(csv.DictReader(open(sys.argv[1]))); print(r[sys.argv[2]])' "$1" "$2"
}
bench() { # output dir, extra harness bench args...
  local out=$1
  shift
  $H bench --task "$TASK" --limit "$LIMIT" --n "$N" --max-tokens "$TOKENS" --ignore-eos \
    --no-semantic --out "$out" "$@" 2>&1 | grep 'sampling:' | sed 's/^ *//'
}
results="$work/results.tsv"

echo "== workload: $TASK, $LIMIT problems, greedy + $N samples, $TOKENS tokens, threads $THREADS, fa $FA"
for p in $SWEEP auto; do
  echo "-- harness bench, embedded llama.cpp, --parallel $p"
  bench "$work/embedded-$p" --parallel "$p" --threads "$THREADS" --flash-attn "$FA"
  printf 'embedded\t%s\t%s\n' "$p" "$(column "$work/embedded-$p/summary.csv" tokens_per_s)" >> "$results"
done
# shellcheck disable=SC2086 # SWEEP is a list of numbers, split on purpose
first=$(set -- $SWEEP; echo "$1")
prompt_tokens=$(python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
print(round(sum(r["prompt_tokens"] for r in rows)/len(rows)))' "$work/embedded-$first/samples/$TASK.jsonl")

for p in $SWEEP; do
  echo "-- harness bench, OpenAI backend -> llama-server -np $p"
  start_llama_server -np "$p" -c $((p * (prompt_tokens + TOKENS + 256))) -t "$THREADS" \
    -tb "$THREADS" -fa "$FA"
  bench "$work/server-$p" --backend openai --base-url "$base_url" --model smollm2 \
    --concurrency "$p"
  printf 'llama-server\t%s\t%s\n' "$p" "$(column "$work/server-$p/summary.csv" tokens_per_s)" >> "$results"
  kill "$server" && wait "$server" 2>/dev/null || true
  server=
done

# shellcheck disable=SC2086 # as above
max_p=$(printf '%s\n' $SWEEP | sort -n | tail -1)
# shellcheck disable=SC2086 # as above
npl=$(echo $SWEEP | tr ' ' ,)
echo "-- llama-batched-bench: B in {$SWEEP}, one shared prompt of $prompt_tokens tokens, $TOKENS tokens each"
"$bin/llama-batched-bench" -m "$model" -c $((max_p * (prompt_tokens + TOKENS) + 256)) -b 512 \
  -ub 512 -fa "$FA" -npp "$prompt_tokens" -ntg "$TOKENS" -npl "$npl" -pps \
  -t "$THREADS" -tb "$THREADS" > "$work/ref.txt" 2>/dev/null
grep '^|' "$work/ref.txt"
awk -F'|' '/^\|/ && $2+0 > 0 { printf "llama-batched-bench\t%d\t%.2f\n", $4, ($4 * $3) / $10 }' \
  "$work/ref.txt" >> "$results"

python3 - "$results" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
engines = ["embedded", "llama-server", "llama-batched-bench"]
columns = list(dict.fromkeys(r[1] for r in rows))
print(f"{'engine':<22}" + "".join(f"{'P=' + p:>9}" for p in columns))
best = {}
for e in engines:
    figures = {p: float(t) for name, p, t in rows if name == e}
    best[e] = max(figures.items(), key=lambda kv: kv[1])
    print(f"{e:<22}" + "".join(f"{figures[p]:9.1f}" if p in figures else f"{'':9}" for p in columns))
for e in engines:
    print(f"best {e:<20}: {best[e][1]:7.1f} tok/s at P={best[e][0]}")
auto = next(float(t) for name, p, t in rows if name == "embedded" and p == "auto")
for label, emb in [("embedded (auto)", auto), ("embedded (best)", best["embedded"][1])]:
    for ref in ["llama-server", "llama-batched-bench"]:
        print(f"{label} / {ref:<20}: {emb / best[ref][1]:.3f}")
PY
