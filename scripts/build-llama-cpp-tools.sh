#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` and `llama-batched-bench` from the llama.cpp sources
# vendored in the PyPI sdist of llama-cpp-python (the only route to llama.cpp's sources from
# a machine that reaches package registries only). The result is cached: a second run
# returns at once. Prints the bin directory on stdout.
#
# Built for the same CPU features as the embedded engine (x86-64-v3: AVX2, FMA, F16C, BMI2;
# see .cargo/config.toml) and, like it, without llamafile's sgemm (GGML_LLAMAFILE=OFF: see the
# README, "Why llamafile's sgemm is off"), so that throughput comparisons measure the same
# kernels and llama-server's greedy text can be compared with the embedded engine's; a
# -march=native build died of an illegal instruction on these virtual machines.
#
#   scripts/build-llama-cpp-tools.sh            # build (about 5 minutes on 2 cores)
#   HARNESS_CACHE=/some/dir scripts/...          # other cache directory
set -euo pipefail

VERSION=0.3.36
cache="${HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harness}"
root="$cache/llama-cpp-python-$VERSION-avx2-nosgemm"
bin="$root/build/bin"

if [ -x "$bin/llama-server" ] && [ -x "$bin/llama-batched-bench" ]; then
  echo "$bin"
  exit 0
fi

command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake >&2; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/llama-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_LLAMAFILE=OFF >&2
cmake --build "$work/build" --target llama-server llama-batched-bench -j "$(nproc)" >&2
rm -rf "$root"
mkdir -p "$root"
mv "$work/build" "$root/build"
echo "$bin"
