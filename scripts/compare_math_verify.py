"""Compares the harness's MATH grades with math-verify's (run by compare-math-verify.sh).

  compare_math_verify.py corpus-samples CORPUS.tsv GOLD_TEST.jsonl OUT.jsonl
      writes a sample file with one response per corpus variant, for `harness grade`
  compare_math_verify.py compare CORPUS.tsv CORPUS_GRADED.jsonl GOLD_TEST.jsonl GOLD_500.jsonl MATH500.jsonl
      grades every corpus variant and every gold with math-verify and prints the
      agreement with the harness, the labels, and each disagreement
"""

import json
import sys

from math_verify import parse, verify


def read_corpus(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#") or line.startswith("label\t"):
                continue
            label, kind, gold, response = line.split("\t")
            rows.append(
                {"line": number, "correct": label == "correct", "kind": kind,
                 "gold": gold, "response": response}
            )
    return rows


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def gold_problems(gold_test):
    """Gold answer -> (split, problem_id) of a MATH test problem with that answer."""
    index = {}
    for sample in read_jsonl(gold_test):
        index.setdefault(sample["extracted"], (sample["split"], sample["problem_id"]))
    return index


def corpus_samples(corpus, gold_test, out):
    index = gold_problems(gold_test)
    with open(out, "w", encoding="utf-8") as f:
        for row in read_corpus(corpus):
            if row["gold"] not in index:
                sys.exit(f"{corpus}:{row['line']}: gold `{row['gold']}` is no MATH test answer")
            split, problem_id = index[row["gold"]]
            response = f"The answer is $\\boxed{{{row['response']}}}$."
            f.write(json.dumps({"split": split, "problem_id": problem_id,
                                "response": response}) + "\n")


def math_verify(gold, response):
    """math-verify's verdict on a response (text with a \\boxed{}) against a gold answer."""
    try:
        return bool(verify(parse(f"\\boxed{{{gold}}}"), parse(response)))
    except Exception:  # math-verify raises on some inputs; that is a "no"
        return False


def report(title, rows, show):
    agree = sum(r["harness"] == r["math_verify"] for r in rows)
    print(f"\n## {title}: {len(rows)} items, harness and math-verify agree on {agree} "
          f"({100.0 * agree / len(rows):.1f}%)")
    for r in rows:
        if r["harness"] != r["math_verify"]:
            print("  " + show(r))


def compare(corpus, graded, gold_test, gold_500):
    rows = read_corpus(corpus)
    samples = read_jsonl(graded)
    assert len(samples) == len(rows), "graded file does not match the corpus"
    for row, sample in zip(rows, samples):
        row["harness"] = sample["correct"]
        row["rule"] = sample["rule"]
        row["math_verify"] = math_verify(row["gold"], sample["response"])
    labelled = len(rows)
    for name in ["harness", "math_verify"]:
        right = sum(r[name] == r["correct"] for r in rows)
        false_pos = sum(r[name] and not r["correct"] for r in rows)
        print(f"{name:12} agrees with the labels on {right}/{labelled} "
              f"({100.0 * right / labelled:.1f}%), wrong answers accepted: {false_pos}")
    report("corpus", rows, lambda r: (
        f"line {r['line']} [{r['kind']}] label {'correct' if r['correct'] else 'wrong'}: "
        f"gold `{r['gold']}` response `{r['response']}` harness {r['harness']} "
        f"({r['rule']}) math-verify {r['math_verify']}"))

    golds = []
    for path in [gold_test, gold_500]:
        for sample in read_jsonl(path):
            golds.append({
                "id": f"{sample['split']}:{sample['problem_id']}",
                "gold": gold_answer(sample),
                "harness": sample["correct"],
                "rule": sample["rule"],
                "math_verify": math_verify(gold_answer(sample), sample["response"]),
            })
    report("gold solutions of MATH test and MATH-500", golds, lambda r: (
        f"{r['id']} gold `{r['gold']}` harness {r['harness']} ({r['rule']}) "
        f"math-verify {r['math_verify']}"))


GOLD_ANSWERS = {}  # MATH-500 problem id -> its `answer` field (read from MATH500.jsonl)


def gold_answer(sample):
    """The gold answer the harness compared with: MATH-500's `answer` field, else the
    solution's own last \\boxed{} (what the harness extracted from it)."""
    if sample["split"] == "math500":
        return GOLD_ANSWERS[sample["problem_id"]]
    return sample["extracted"]


def main():
    command = sys.argv[1]
    if command == "corpus-samples":
        corpus_samples(*sys.argv[2:5])
    elif command == "compare":
        with open(sys.argv[6], encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                GOLD_ANSWERS[row["unique_id"]] = row["answer"]
        compare(*sys.argv[2:6])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
