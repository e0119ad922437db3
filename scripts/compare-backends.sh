#!/usr/bin/env bash
# Greedy agreement of the two backends on the same GGUF: `harness bench` with the embedded
# llama.cpp engine and with the OpenAI backend against llama-server, greedy only, on LIMIT
# (default 50) gsm8k test problems spread evenly through the split. Prints how many greedy responses (and graded
# answers) agree, and the problems where they differ.
#
# Both sides use plain attention (`--flash-attn off`; llama-server `-fa off`): llama-server's
# flash attention changes its summation order with the batch's shape (the engine keeps its
# own on one order, which is not llama-server's), so greedy text would depend on which
# requests share a batch. llama-server also runs without its
# prompt cache (with it on, 38 of 50 responses matched instead of 49-50).
# SLOTS (default 8) sets llama-server's parallel slots and the client's concurrency.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-50}
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

common=(--task gsm8k --limit "$LIMIT" --n 0 --max-tokens 256 --no-semantic --flash-attn off)
$H bench "${common[@]}" --out "$work/llamacpp" | tail -2
SLOTS=${SLOTS:-8}
start_llama_server -np "$SLOTS" -c $((SLOTS * 2048)) --flash-attn off --no-cache-prompt
$H bench "${common[@]}" --backend openai --base-url "$base_url" --model smollm2 \
  --concurrency "$SLOTS" --out "$work/openai" | tail -2

$H compare "$work/llamacpp" "$work/openai" --out "$work/compare" | grep -E 'greedy|tokens/s'

python3 - "$work/llamacpp/samples/gsm8k.jsonl" "$work/openai/samples/gsm8k.jsonl" <<'PY'
import json, sys
load = lambda p: {s["problem_id"]: s for s in map(json.loads, open(p)) if s["sample_index"] is None}
a, b = load(sys.argv[1]), load(sys.argv[2])
ids = sorted(a)
same_text = [i for i in ids if a[i]["response"] == b[i]["response"]]
same_answer = [i for i in ids if a[i].get("normalized") == b[i].get("normalized")]
print(f"greedy responses identical: {len(same_text)}/{len(ids)} ({100 * len(same_text) / len(ids):.1f}%)")
print(f"extracted answers equal:    {len(same_answer)}/{len(ids)} ({100 * len(same_answer) / len(ids):.1f}%)")
for i in ids:
    if a[i]["response"] != b[i]["response"]:
        x, y = a[i]["response"], b[i]["response"]
        k = next((j for j in range(min(len(x), len(y))) if x[j] != y[j]), min(len(x), len(y)))
        print(f"  {i}: differ from char {k}: embedded {x[k:k+40]!r} / server {y[k:k+40]!r}")
PY
