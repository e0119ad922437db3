#!/usr/bin/env bash
# The loop's real sampling call, as each round makes it on its training questions (arith
# train, 100 questions x (greedy + 4 samples at T=0.75), stop at end of turn, answers of
# their natural length), on M0 + a round's adapter.gguf, in the embedded engine
# (`--parallel auto`) and through the OpenAI backend against llama-server `--lora` at
# -np 32 and 64, in one run, both with flash attention FA (default on, the engine's default;
# FA=off for plain attention). Prints each engine's tokens/s and the embedded engine's profile
# (llama_decode calls, prompt and generated tokens, micro-batches, moves).
#
#   scripts/bench-real-call.sh RUN/round-1/model/adapter.gguf
#
# (The adapter of any LoRA round; M1's answers are the loop's short ones, M0's ramble.)
set -euo pipefail
cd "$(dirname "$0")/.."
adapter=$(realpath "${1:?usage: scripts/bench-real-call.sh ADAPTER.gguf}")
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
FA=${FA:-on}
call=(--task arith --split train --limit 100 --n 4 --no-semantic)
tps() { python3 -c 'import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))["tokens_per_s"])' "$1/summary.csv"; }
RUST_LOG=backends=info $H bench "${call[@]}" --lora "$adapter" --flash-attn "$FA" \
  --out "$work/embedded" 2>&1 \
  | grep -E 'llamacpp profile|sampling:' | sed 's/\x1b\[[0-9;]*m//g; s/^.*llamacpp profile/profile:/'
echo "embedded (auto): $(tps "$work/embedded") tok/s"
for np in 32 64; do
  start_llama_server --lora "$adapter" -np "$np" -c $((np * 512)) -fa "$FA"
  $H bench "${call[@]}" --backend openai --base-url "$base_url" --model smollm2 \
    --concurrency "$np" --out "$work/server-$np" > /dev/null 2>&1
  echo "llama-server -np $np: $(tps "$work/server-$np") tok/s"
  kill "$server" && wait "$server" 2>/dev/null || true
  server=
done
