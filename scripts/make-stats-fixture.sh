#!/usr/bin/env bash
# Makes results/tests/fixtures/stats.json with scipy and statsmodels (pinned, from PyPI, in a
# virtual environment under ~/.cache/harness; STATS_VENV overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${STATS_VENV:-$HOME/.cache/harness/stats-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import scipy, statsmodels' 2>/dev/null; then
    echo "== installing numpy, scipy and statsmodels into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'numpy==2.3.5' 'scipy==1.17.1' 'statsmodels==0.15.0'
fi
"$venv/bin/python" scripts/make_stats_fixture.py results/tests/fixtures/stats.json
echo "== wrote results/tests/fixtures/stats.json"
