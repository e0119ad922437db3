#!/usr/bin/env bash
# What building and running the harness needs on a bare machine, installed when missing:
# cmake and libclang (llama-cpp-sys-2 builds llama.cpp and its bindings), Python 3 with pip
# (fetches the default model from PyPI, runs MBPP programs). As root with apt-get it installs
# them; otherwise it prints the one line to run and stops. Needs a Rust toolchain (rustup).
#
#   scripts/setup.sh        # called by scripts/harness.sh and .ci/run
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no Rust toolchain; install it with:" >&2
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y && . \"\$HOME/.cargo/env\"" >&2
  exit 1
fi
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
# libclang-dev's unversioned libclang.so (libclang-cpp, which a bare machine may have, is not it)
compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || compgen -G '/usr/lib/*/libclang.so' >/dev/null \
  || missing+=(libclang-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get update && apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
else
  echo "setup: missing ${missing[*]}; install them with:" >&2
  echo "  sudo sh -c '$line'" >&2
  exit 1
fi
