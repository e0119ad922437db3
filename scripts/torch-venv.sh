#!/usr/bin/env bash
# Prints the Python of ~/.cache/harness/torch-venv, first making sure it holds the versions
# the round-trip scripts were written against: torch (CPU is enough), transformers, PEFT, TRL
# (with datasets) and gguf. First use downloads several GB from PyPI (minutes); the
# environment is then reused. Everything but the path goes to stderr.
set -euo pipefail
venv=${HARNESS_CACHE:-$HOME/.cache/harness}/torch-venv
if ! "$venv/bin/python" - 2>/dev/null <<'PY'
import importlib.metadata as m
want = {"transformers": "5.25.0", "peft": "0.21.2", "trl": "1.16.0"}
assert all(m.version(p) == v for p, v in want.items())
import torch, datasets, gguf  # noqa: F401
PY
then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q torch 'transformers==5.25.0' 'peft==0.21.2' 'trl==1.16.0' datasets gguf >&2
fi
echo "$venv/bin/python"
