"""Makes results/tests/fixtures/stats.json: reference intervals and p-values for
results/tests/stats.rs, computed by scipy and statsmodels on fixed data.

- Percentile-bootstrap 95% intervals (scipy.stats.bootstrap, method="percentile",
  20,000 resamples) of a mean of 0/1 outcomes (20 and 200 problems), a mean of values in
  [0, 1] (per-question diversity), a pooled share sum(num) / sum(den) (coverage), and the
  paired change of a mean between two evaluations of the same problems.
- Exact McNemar p-values (statsmodels.stats.contingency_tables.mcnemar, exact=True) of the
  2x2 tables of two evaluations' greedy outcomes.

The data are drawn here from a seeded NumPy generator and written into the fixture, so the
Rust test computes on exactly these values; its own resamples differ from scipy's, so the
intervals agree within the Monte Carlo error the test states, the p-values exactly.

Usage: scripts/make-stats-fixture.sh (makes the virtual environment, then runs this).
"""

import json
import sys

import numpy as np
import scipy
import statsmodels
from scipy.stats import bootstrap
from statsmodels.stats.contingency_tables import mcnemar

RESAMPLES = 20_000


def interval(data, statistic, paired=False, seed=0):
    result = bootstrap(
        data,
        statistic,
        n_resamples=RESAMPLES,
        paired=paired,
        vectorized=False,
        method="percentile",
        confidence_level=0.95,
        random_state=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def main(out):
    rng = np.random.default_rng(20261206)
    cases = []

    for name, n, p in [("binary-20", 20, 0.3), ("binary-200", 200, 0.45)]:
        values = (rng.random(n) < p).astype(float)
        cases.append({
            "name": name, "kind": "mean", "values": values.tolist(),
            "value": float(values.mean()),
            "interval": interval((values,), np.mean),
        })

    values = rng.beta(5, 2, 60)
    cases.append({
        "name": "diversity-60", "kind": "mean", "values": values.tolist(),
        "value": float(values.mean()),
        "interval": interval((values,), np.mean),
    })

    den = rng.integers(2, 9, 80).astype(float)
    num = np.array([rng.binomial(int(d), 0.4) for d in den], dtype=float)
    cases.append({
        "name": "pooled-80", "kind": "ratio", "num": num.tolist(), "den": den.tolist(),
        "value": float(num.sum() / den.sum()),
        "interval": interval((num, den), lambda a, b: a.sum() / b.sum(), paired=True),
    })

    n = 200
    before = (rng.random(n) < 0.4).astype(float)
    flip = rng.random(n)
    after = np.where(flip < 0.12, 1.0, np.where(flip < 0.17, 0.0, before))
    cases.append({
        "name": "paired-binary-200", "kind": "paired", "before": before.tolist(),
        "after": after.tolist(), "value": float(after.mean() - before.mean()),
        "interval": interval((before, after), lambda b, a: a.mean() - b.mean(), paired=True),
    })

    before = rng.beta(4, 3, 60)
    after = np.clip(before - 0.03 + rng.normal(0, 0.05, 60), 0, 1)
    cases.append({
        "name": "paired-diversity-60", "kind": "paired", "before": before.tolist(),
        "after": after.tolist(), "value": float(after.mean() - before.mean()),
        "interval": interval((before, after), lambda b, a: a.mean() - b.mean(), paired=True),
    })

    tables = []
    for gained, lost in [(0, 3), (4, 1), (3, 3), (12, 5), (31, 12), (2, 40), (150, 170)]:
        table = [[25, lost], [gained, 40]]  # rows: before right/wrong; columns: after right/wrong
        result = mcnemar(table, exact=True)
        tables.append({"gained": gained, "lost": lost, "p_value": float(result.pvalue)})

    fixture = {
        "made_by": "scripts/make_stats_fixture.py",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__,
                     "statsmodels": statsmodels.__version__},
        "resamples": RESAMPLES,
        "cases": cases,
        "mcnemar": tables,
    }
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/tests/fixtures/stats.json")
