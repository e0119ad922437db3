//! The labelled MATH equivalence corpus (`fixtures/math_equivalence.tsv`): correct variants
//! of real MATH golds written another way, and near misses that must stay wrong. No wrong
//! variant may pass; every correct one must. Also: every MATH gold equals itself through the
//! tree comparison, not only as a string.

use std::collections::HashSet;

use benchmarks::grade::math::{grade, same_answer};
use benchmarks::{DataSource, task};

struct Variant {
    line: usize,
    correct: bool,
    kind: String,
    gold: String,
    response: String,
}

fn corpus() -> Vec<Variant> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/math_equivalence.tsv"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut variants = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.starts_with("label\t") || line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{path}:{}: want 4 fields", index + 1);
        let correct = match fields[0] {
            "correct" => true,
            "wrong" => false,
            other => panic!("{path}:{}: field `label` is `{other}`", index + 1),
        };
        variants.push(Variant {
            line: index + 1,
            correct,
            kind: fields[1].into(),
            gold: fields[2].into(),
            response: fields[3].into(),
        });
    }
    variants
}

fn math_golds() -> Vec<String> {
    let math = task("math").unwrap();
    ["test", "math500"]
        .iter()
        .flat_map(|split| math.load(split, &DataSource::Embedded, 0).unwrap())
        .map(|p| p.answer)
        .collect()
}

#[test]
fn corpus_is_graded_as_labelled() {
    let variants = corpus();
    let golds: HashSet<String> = math_golds().into_iter().collect();
    let wrong = variants.iter().filter(|v| !v.correct).count();
    assert!(variants.len() >= 300 && wrong >= 100, "corpus too small");

    let mut false_positives = Vec::new();
    let mut false_negatives = Vec::new();
    let mut kinds = HashSet::new();
    for v in &variants {
        assert!(
            golds.contains(&v.gold),
            "line {}: `{}` is not a MATH gold answer",
            v.line,
            v.gold
        );
        kinds.insert(v.kind.as_str());
        let verdict = grade(
            &format!("so the answer is $\\boxed{{{}}}$.", v.response),
            &v.gold,
        );
        let report = format!(
            "line {} [{}] gold `{}` response `{}` -> {} by {}",
            v.line, v.kind, v.gold, v.response, verdict.correct, verdict.rule
        );
        match (v.correct, verdict.correct) {
            (false, true) => false_positives.push(report),
            (true, false) => false_negatives.push(report),
            _ => {}
        }
    }
    for kind in [
        "order",
        "matrix",
        "solutions",
        "mixed",
        "base",
        "thousands",
        "interval",
        "choice",
        "hedged-text",
        "hedged-list",
        "hedged-set",
        "gold-twice",
    ] {
        assert!(kinds.contains(kind), "no variant of kind {kind}");
    }
    assert!(
        false_positives.is_empty(),
        "wrong answers graded correct:\n{}",
        false_positives.join("\n")
    );
    assert!(
        false_negatives.is_empty(),
        "correct answers graded wrong:\n{}",
        false_negatives.join("\n")
    );
}

/// Each gold equals itself through the tree comparison (the grader's string shortcut is
/// bypassed), so no gold is outside what the comparison can hold equal; the few the grammar
/// does not cover (prose, inequalities) are counted and fall back to strings.
#[test]
fn every_gold_equals_itself_as_a_tree() {
    let golds = math_golds();
    let mut unparsed = Vec::new();
    let mut unequal = Vec::new();
    for gold in &golds {
        match same_answer(gold, gold) {
            Some((true, _)) => {}
            Some((false, rule)) => unequal.push(format!("{gold} ({rule})")),
            None => unparsed.push(gold.as_str()),
        }
    }
    println!(
        "{} golds; {} outside the grammar: {:?}",
        golds.len(),
        unparsed.len(),
        &unparsed[..unparsed.len().min(40)]
    );
    assert!(
        unequal.is_empty(),
        "golds unequal to themselves: {unequal:?}"
    );
    assert!(
        unparsed.len() * 100 < golds.len(),
        "more than 1% of golds unparsed"
    );
}
