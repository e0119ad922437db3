"""The README's tables, printed as Markdown from the CSVs `harness run` / `harness report`
writes in a loop directory (or the copies in reports/): nothing is computed here that the
harness did not compute; values are only selected and formatted.

    python3 experiments/arith-smollm2/tables.py runs/arith-smollm2     # or .../reports
"""

import csv
import os
import sys

METHODS = ["sft", "dpo", "sft-dpo"]

# (column title, task, split, metric, subset, k) of the per-round table.
COLUMNS = [
    ("greedy pass@1", "arith", "test", "greedy_pass@1", "all", ""),
    ("pass@8", "arith", "test", "pass@k", "all", "8"),
    ("pass@1 (sampled)", "arith", "test", "pass@k", "all", "1"),
    ("OOD greedy pass@1", "arith", "ood", "greedy_pass@1", "all", ""),
    ("OOD pass@8", "arith", "ood", "pass@k", "all", "8"),
    ("Distinct-N [correct]", "arith", "test", "distinct_n", "correct", ""),
    ("SentenceBERT [correct]", "arith", "test", "sbert_diversity", "correct", ""),
    ("GD L1 vs L5", "arith", "test+ood", "group_disparity", "level=1 vs level=5", ""),
]

# Paired changes against M1 (deltas.csv): (title, split, metric).
CHANGES = [
    ("greedy pass@1", "test", "greedy_pass@1"),
    ("pass@8", "test", "pass@8"),
    ("OOD greedy pass@1", "ood", "greedy_pass@1"),
    ("OOD pass@8", "ood", "pass@8"),
    ("GD L1 vs L5", "test+ood", "group_disparity[level=1 vs level=5]"),
]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def share(value, percent):
    return f"{100 * float(value):.1f}" if percent else f"{float(value):.3f}"


def cell(row, percent):
    if row is None or row["value"] == "":
        return "-"
    text = share(row["value"], percent)
    if row["ci_low"] != "":
        text += f" [{share(row['ci_low'], percent)}, {share(row['ci_high'], percent)}]"
    return text


def per_round(run, method):
    rows = read(os.path.join(run, method, "metrics.csv"))
    index = {(r["task"], r["split"], r["metric"], r["subset"], r["k"], r["round"]): r for r in rows}
    rounds = sorted({int(r["round"]) for r in rows})
    print(f"\n**{method}** (95% intervals; shares in %, n = problems)\n")
    print("| round | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for t in rounds:
        cells = []
        for title, task, split, metric, subset, k in COLUMNS:
            row = index.get((task, split, metric, subset, k, str(t)))
            percent = metric in ("greedy_pass@1", "pass@k")
            cells.append(cell(row, percent))
        print(f"| {'M1' if t == 1 else t} | " + " | ".join(cells) + " |")
    ns = {c[2]: next((r["n_problems"] for r in rows if r["split"] == c[2]), "?") for c in COLUMNS[:4]}
    print(f"\nn: test {ns['test']}, OOD {ns['ood']}.")
    sizes = [r for r in rows if r["metric"] == "improvement_set_size" and r["split"] == "test"]
    on_is = {r["round"]: r for r in rows if r["metric"] == "is_round1_pass@k" and r["split"] == "test" and r["k"] == "8"}
    for r in sorted(sizes, key=lambda r: int(r["round"])):
        if r["round"] != "1":
            m1 = on_is.get(r["round"])
            print(f"- round {r['round']}: |IS| = {float(r['value']):.0f}, M1's pass@8 on IS = {cell(m1, True)}")


def change_cells(rows, after, before):
    """The CHANGES columns of the paired comparison `after` against `before`."""
    cells = []
    for _, split, metric in CHANGES:
        row = next((r for r in rows if r["before"] == before and r["after"] == after and r["split"] == split and r["metric"] == metric), None)
        if row is None or row["change"] == "":
            cells.append("-")
            continue
        # Shares in points; group disparity is a ratio, kept as one.
        scale, digits = (1, 3) if metric.startswith("group_disparity") else (100, 1)
        mark = "*" if float(row["ci_low"]) > 0 or float(row["ci_high"]) < 0 else ""
        value = lambda key: f"{scale * float(row[key]):+.{digits}f}"
        cells.append(
            f"{value('change')}{mark} [{value('ci_low')}, {value('ci_high')}], "
            f"p {float(row['p_value']):.3f}"
        )
    return cells


def header(first):
    print(f"| {first} | " + " | ".join(c[0] for c in CHANGES) + " |")
    print("|---" * (len(CHANGES) + 1) + "|")


def round_of(name):
    return int(name.split()[-1])


def changes(run, method):
    rows = read(os.path.join(run, method, "deltas.csv"))
    afters = sorted({r["after"] for r in rows if r["before"] == "M1"}, key=round_of)
    print(f"\n**{method}: paired changes against M1** (points; 95% interval, p; * = interval excludes 0)\n")
    header("round")
    for after in afters:
        print(f"| {round_of(after)} | " + " | ".join(change_cells(rows, after, "M1")) + " |")
    later = [a for a in afters if round_of(a) > 2]
    if later:
        print(f"\n**{method}: paired changes against the round before**\n")
        header("round")
        for after in later:
            before = f"{method} round {round_of(after) - 1}"
            print(f"| {round_of(after)} vs {round_of(after) - 1} | " + " | ".join(change_cells(rows, after, before)) + " |")


def methods(run):
    path = os.path.join(run, "methods_deltas.csv")
    if not os.path.exists(path):
        return
    rows = read(path)
    pairs = sorted({(r["after"], r["before"]) for r in rows}, key=lambda p: (round_of(p[0]), p))
    print("\n**Methods against each other, round by round** (points; 95% interval, p)\n")
    header("after vs before")
    for after, before in pairs:
        print(f"| {after} vs {before} | " + " | ".join(change_cells(rows, after, before)) + " |")


def main():
    run = sys.argv[1] if len(sys.argv) > 1 else "runs/arith-smollm2"
    for method in METHODS:
        if os.path.exists(os.path.join(run, method, "metrics.csv")):
            per_round(run, method)
            changes(run, method)
    methods(run)


if __name__ == "__main__":
    main()
