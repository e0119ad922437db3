#!/usr/bin/env bash
# Compares `harness grade` on MATH with math-verify (Hugging Face's grader, from PyPI, in a
# virtual environment this script makes) on the labelled corpus
# (benchmarks/tests/fixtures/math_equivalence.tsv) and on every gold solution of MATH test
# and MATH-500, printing the agreement and each disagreement.
#
#   scripts/compare-math-verify.sh            # builds target/release/harness if missing
#
# Environment: HARNESS (the binary), MATH_VERIFY_VENV (default
# ~/.cache/harness/math-verify-venv), HARNESS_DATA_DIR (MATH-500's test.jsonl is read from
# there, default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${MATH_VERIFY_VENV:-$HOME/.cache/harness/math-verify-venv}
harness=${HARNESS:-target/release/harness}
data=${HARNESS_DATA_DIR:-../shared/data}
corpus=benchmarks/tests/fixtures/math_equivalence.tsv

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import math_verify' 2>/dev/null; then
    echo "== installing math-verify into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'math-verify==0.9.0'
fi
if [ ! -x "$harness" ]; then
    echo "== building $harness"
    cargo build --release -p harness
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== harness: grading the gold solutions and the corpus"
"$harness" grade --task math --gold --split test --output "$work/gold-test.jsonl" --show-failures 0
"$harness" grade --task math --gold --split math500 --output "$work/gold-500.jsonl" --show-failures 0
"$venv/bin/python" scripts/compare_math_verify.py corpus-samples "$corpus" \
    "$work/gold-test.jsonl" "$work/corpus.jsonl"
"$harness" grade --task math --input "$work/corpus.jsonl" --output "$work/corpus-graded.jsonl" \
    --show-failures 0
echo "== math-verify: grading the same (a few minutes)"
"$venv/bin/python" scripts/compare_math_verify.py compare "$corpus" "$work/corpus-graded.jsonl" \
    "$work/gold-test.jsonl" "$work/gold-500.jsonl" "$data/math500/test.jsonl"
