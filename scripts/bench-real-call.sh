#!/usr/bin/env bash
# The loop's real sampling call, as each round makes it on its training questions (arith
# train, 100 questions x (greedy + 4 samples at T=0.75), stop at end of turn, answers of
# their natural length), on M0 + a round's adapter.gguf, in the embedded engine
# (`--parallel auto`) and through the OpenAI backend against llama-server `--lora` at
# -np 32 and 64, in one run, both with flash attention FA (default on, the engine's default;
# FA=off for plain attention). Prints each engine's tokens/s and the embedded engine's profile
# (llama_decode calls, prompt and generated tokens, micro-batches, moves).
#
# Then the same 500 sequences at a fixed length (64 tokens each, end of turn ignored: the
# fixed workload's shape on the real call's prompts), once with the adapter and once on M0
# alone, so that one run gives where the real call stands: real / fixed with the same model
# (what answers of their own, shorter and uneven, lengths cost: more prompt tokens per new
# token, and a tail of steps with few sequences) and fixed with / without the adapter (what
# llama.cpp's run-time adapter products cost). Last, for each embedded call,
# from its profile: decoded tokens (prompt + fed back) per new token, and the milliseconds a
# prompt token and a running token cost inside llama_decode; equal costs per token with fewer
# new tokens per decoded one mean the call's own shape, not the engine, sets its tok/s.
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
embedded() { # name, extra harness bench args...: runs the call, keeps its profile in $work/NAME.log
  local name=$1
  shift
  RUST_LOG=backends=info $H bench "${call[@]}" --flash-attn "$FA" --out "$work/$name" "$@" 2>&1 \
    | grep -E 'llamacpp profile|sampling:' \
    | sed 's/\x1b\[[0-9;]*m//g; s/^.*llamacpp profile/profile:/; s/^ *//' > "$work/$name.log"
}
embedded embedded --lora "$adapter"
cat "$work/embedded.log"
echo "embedded (auto): $(tps "$work/embedded") tok/s"
embedded fixed-adapter --lora "$adapter" --max-tokens 64 --ignore-eos
echo "embedded, 64 tokens each, M0 + adapter: $(tps "$work/fixed-adapter") tok/s"
embedded fixed-m0 --max-tokens 64 --ignore-eos
echo "embedded, 64 tokens each, M0 alone: $(tps "$work/fixed-m0") tok/s"
for np in 32 64; do
  start_llama_server --lora "$adapter" -np "$np" -c $((np * 512)) -fa "$FA"
  $H bench "${call[@]}" --backend openai --base-url "$base_url" --model smollm2 \
    --concurrency "$np" --out "$work/server-$np" > /dev/null 2>&1
  echo "llama-server -np $np: $(tps "$work/server-$np") tok/s"
  kill "$server" && wait "$server" 2>/dev/null || true
  server=
done
python3 - "$work" <<'PY'
import csv, re, sys
work = sys.argv[1]
tps = lambda name: float(next(csv.DictReader(open(f"{work}/{name}/summary.csv")))["tokens_per_s"])
real, fixed, m0 = tps("embedded"), tps("fixed-adapter"), tps("fixed-m0")
best_server = max(tps("server-32"), tps("server-64"))
print(f"real call / fixed length, both M0 + adapter   : {real / fixed:.3f}")
print(f"fixed length, M0 + adapter / M0 alone        : {fixed / m0:.3f}")
print(f"real call / fixed length on M0 alone         : {real / m0:.3f}")
print(f"embedded / best llama-server on the real call: {real / best_server:.3f}")
print("where each embedded call's time went (inside llama_decode):")
for name in ["embedded", "fixed-adapter", "fixed-m0"]:
    line = next(l for l in open(f"{work}/{name}.log") if l.startswith("profile:"))
    p = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", line)}
    running_s = p["decode_s"] - p["prompt_s"]
    print(f"  {name:14s}: {(p['prompt_tokens'] + p['generated_tokens']) / p['generated_tokens']:.2f}"
          f" decoded tokens per new token; {1000 * p['prompt_s'] / p['prompt_tokens']:.2f} ms per"
          f" prompt token, {1000 * running_s / p['generated_tokens']:.2f} ms per running token")
PY
