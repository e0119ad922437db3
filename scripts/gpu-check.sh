#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, the CUDA toolkit (nvcc) and about 16 cores.
# It cannot run on the 2-core, GPU-less machines this project is built on; there it stops at
# the first line. In about 10 minutes (most of it the two builds) it:
#   1. builds the harness with the `cuda` feature (target/cuda) and without it (target/cpu);
#   2. runs the embedded engine's tests with every layer on the GPU;
#   3. measures the loop's real sampling call (100 arith training questions x (greedy + 4),
#      stop at end of turn) on the GPU build and on the CPU build, and prints the ratio;
#   4. runs a 2-round loop (sft and dpo sharing M1) with the GPU engine and the GPU trainer
#      and prints its table and phases.
#
#   scripts/gpu-check.sh [OUT]       # OUT default: runs/gpu-check-<unix time>
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
command -v nvcc > /dev/null || { echo "gpu-check: needs the CUDA toolkit (nvcc on PATH)" >&2; exit 1; }
out=${1:-runs/gpu-check-$(date +%s)}
mkdir -p "$out"
gpu=target/cuda/release/harness
cpu=target/cpu/release/harness

echo "== builds"
cargo build --release --quiet -p harness --features cuda --target-dir target/cuda
cargo build --release --quiet -p harness --target-dir target/cpu

# A build with shared libraries (LLAMA_BUILD_SHARED_LIBS=1, for a toolkit from NVIDIA's
# wheels: README, "GPU builds") runs from the crate's out/lib.
for lib in target/cuda/release/build/llama-cpp-sys-2-*/out/lib; do
  [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib:${CUDA_PATH:+$CUDA_PATH/lib:}${LD_LIBRARY_PATH:-}"
done

echo "== the engine's tests, every layer on the GPU"
HARNESS_TEST_GPU_LAYERS=999 cargo test --release --quiet -p backends --features cuda \
  --target-dir target/cuda --test llamacpp

# real_call BINARY NAME FLAGS...: the loop's sampling call as a bench run; prints its tok/s.
real_call() {
  local bin=$1 name=$2
  shift 2
  "$bin" bench --task arith --split train --limit 100 --n 4 --no-semantic --bootstrap 0 \
    --out "$out/$name" "$@" > "$out/$name.log" 2>&1
  python3 -c 'import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))["tokens_per_s"])' \
    "$out/$name/summary.csv"
}
echo "== the loop's real call"
on_gpu=$(real_call "$gpu" real-call-gpu --gpu-layers 999)
on_cpu=$(real_call "$cpu" real-call-cpu)
python3 -c 'import sys; g, c = map(float, sys.argv[1:]); print(f"GPU {g:.1f} tok/s, CPU {c:.1f} tok/s: {g / c:.1f}x")' \
  "$on_gpu" "$on_cpu"

echo "== a 2-round loop on the GPU"
"$gpu" run --rounds 2 --method sft,dpo --gpu-layers 999 --no-semantic --out "$out/loop" \
  2> "$out/loop.log" | tail -n 20
echo "== done: $out"
