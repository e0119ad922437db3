# shellcheck shell=bash disable=SC2034 # sourced: its variables are used by the scripts that source it
# Shared setup of the measurement scripts (sourced, not run): llama.cpp's tools, the release
# harness, the default model, a scratch directory, and a llama-server on a free port.
# Sets: bin (llama.cpp tools), H (harness), model, work; start_llama_server sets base_url.

bin=$(scripts/build-llama-cpp-tools.sh)
cargo build --release --quiet -p harness
H=target/release/harness
model=$($H fetch)
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT

# start_llama_server ARGS...: serves $model as `smollm2` with the extra llama-server ARGS,
# waits until /health answers, and sets base_url.
start_llama_server() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$port" --alias smollm2 "$@" \
    > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  base_url="http://127.0.0.1:$port/v1"
}
