#!/usr/bin/env bash
# Greedy agreement of the two backends on the same GGUF: `harness bench` with the embedded
# llama.cpp engine and with the OpenAI backend against llama-server, greedy only, on the
# first LIMIT (default 50) gsm8k test problems. Prints how many greedy responses (and graded
# answers) agree, and the problems where they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-50}
bin=$(scripts/build-llama-cpp-tools.sh)
cargo build --release --quiet -p harness
H=target/release/harness
model=$($H fetch)
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT

common=(--task gsm8k --limit "$LIMIT" --n 0 --max-tokens 256)
$H bench "${common[@]}" --out "$work/llamacpp" | tail -2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$port" --alias smollm2 -np 8 -c 16384 \
  > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
$H bench "${common[@]}" --backend openai --base-url "http://127.0.0.1:$port/v1" --model smollm2 \
  --concurrency 8 --out "$work/openai" | tail -2

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
