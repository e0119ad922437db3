# shellcheck shell=bash disable=SC2034 # sourced: its variables are used by the scripts that source it
# Shared setup of the scripts that check against PyTorch libraries (sourced, not run): the
# torch environment (scripts/torch-venv.sh), the release harness, the default model and a
# scratch directory removed on exit. Sets: py, H, model, work.

py=$(scripts/torch-venv.sh)
export TQDM_DISABLE=1 # the GGUF dequantisation bars
cargo build --release --quiet -p harness
H=target/release/harness
model=$($H fetch)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
