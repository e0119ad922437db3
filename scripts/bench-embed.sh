#!/usr/bin/env bash
# SentenceBERT embedding throughput: the harness's encoder (results::SentenceEncoder) against the
# sentence-transformers library on CPU, on the same texts (GSM8K solutions cut to 200
# tokens), batch 32, the same thread count, in one run; prints texts/s and the ratio.
#
#   scripts/bench-embed.sh [THREADS] [TEXTS] [REPEATS]
#
# First use installs torch, transformers and sentence-transformers into
# ~/.cache/harness/torch-venv (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
count=${2:-256}
repeats=${3:-3}
venv=${HARNESS_CACHE:-$HOME/.cache/harness}/torch-venv
if ! "$venv/bin/python" -c 'import torch, transformers, sentence_transformers' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers sentence-transformers
fi
cargo build --release --quiet -p harness
cargo build --release --quiet -p results --example embed_bench
model=$(target/release/harness fetch --sentence-encoder)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" scripts/embed_bench.py texts "$model" "$work/texts.json" "$count" 200
ours=$(RAYON_NUM_THREADS=$threads target/release/examples/embed_bench "$model" "$work/texts.json" 32 "$repeats")
torch=$(OMP_NUM_THREADS=$threads "$venv/bin/python" scripts/embed_bench.py time "$model" "$work/texts.json" 32 "$repeats" "$threads")
echo "$ours"
echo "$torch"
python3 - "$ours" "$torch" <<'PY'
import json, sys
c, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"embedding {c['texts']} texts of 200 tokens, batch 32: harness {c['texts_per_second']:.1f} texts/s, "
      f"sentence-transformers {t['texts_per_second']:.1f} texts/s, ratio {c['texts_per_second'] / t['texts_per_second']:.2f}")
PY
