//! Intervals on metric rows and paired changes between rounds and methods, on hand-made
//! sample sets: the point values are the ones `measure` always gave, the intervals bracket
//! them, the greedy pass@1 changes carry McNemar's p-value of exactly the problems that
//! changed, and the training questions get no improvement set.

use std::collections::HashMap;

use benchmarks::Sample;
use results::stats::{Bootstrap, mcnemar_exact};
use results::{Measures, Metric, ProblemGroups, SampleSet, measure, method_changes, round_changes};

/// Greedy outcomes of `n` problems (`correct(i)`) plus 4 samples each, in `split`.
fn round(split: &str, n: usize, correct: impl Fn(usize) -> bool) -> Vec<Sample> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("p{i:02}");
        let greedy = (split != "train").then_some(None);
        for index in greedy.into_iter().chain((0..4).map(Some)) {
            out.push(Sample {
                task: "arith".into(),
                split: split.into(),
                problem_id: id.clone(),
                sample_index: index,
                correct: Some(correct(i) ^ (index == Some(3))),
                response: format!("answer {i} {index:?}"),
                completion_tokens: Some(10),
                finish_reason: Some("stop".into()),
                ..Sample::default()
            });
        }
    }
    out
}

fn measured(rounds: &[(u32, &str, Vec<Sample>)], bootstrap: Bootstrap) -> Measures {
    let groups: HashMap<String, ProblemGroups> = HashMap::new();
    let sets: Vec<SampleSet> = rounds
        .iter()
        .map(|(r, split, samples)| SampleSet {
            task: "arith".into(),
            split: split.to_string(),
            round: *r,
            samples,
            groups: &groups,
        })
        .collect();
    measure(&sets, None, bootstrap).unwrap()
}

const B: Bootstrap = Bootstrap {
    resamples: 1000,
    seed: 5,
};

#[test]
fn every_defined_row_has_an_interval_around_its_value() {
    let m = measured(&[(1, "test", round("test", 40, |i| i % 3 == 0))], B);
    assert_eq!(m.metrics.len(), m.units.len());
    let pass1 = m
        .metrics
        .iter()
        .find(|r| r.metric == Metric::GreedyPass1 && r.subset == "all")
        .unwrap();
    assert_eq!(pass1.value, Some(14.0 / 40.0));
    let (low, high) = (pass1.ci_low.unwrap(), pass1.ci_high.unwrap());
    assert!(
        low < 0.35 && 0.35 < high && high - low > 0.15,
        "[{low}, {high}]"
    );
    for row in &m.metrics {
        if let (Some(v), Some(low), Some(high)) = (row.value, row.ci_low, row.ci_high) {
            assert!(low <= v + 1e-12 && v <= high + 1e-12, "{row:?}");
        }
    }
    // Off: the same values, no intervals.
    let off = measured(
        &[(1, "test", round("test", 40, |i| i % 3 == 0))],
        Bootstrap {
            resamples: 0,
            seed: 5,
        },
    );
    assert!(
        off.metrics
            .iter()
            .all(|r| r.ci_low.is_none() && r.ci_high.is_none())
    );
    let values = |m: &Measures| m.metrics.iter().map(|r| r.value).collect::<Vec<_>>();
    assert_eq!(values(&off), values(&m));
}

#[test]
fn training_questions_have_no_improvement_set() {
    let m = measured(
        &[
            (1, "train", round("train", 10, |i| i < 5)),
            (2, "train", round("train", 10, |i| i < 7)),
        ],
        B,
    );
    assert!(
        !m.metrics
            .iter()
            .any(|r| r.metric == Metric::ImprovementSetSize),
        "{:?}",
        m.metrics
    );
}

#[test]
fn changes_against_m1_and_the_previous_round_are_paired() {
    // M1 solves p00-p09 of 40; round 2 gains p10-p19 and loses p00-p01; round 3 = round 2.
    let m = measured(
        &[
            (1, "test", round("test", 40, |i| i < 10)),
            (2, "test", round("test", 40, |i| (2..20).contains(&i))),
            (3, "test", round("test", 40, |i| (2..20).contains(&i))),
        ],
        B,
    );
    let changes = round_changes("sft", &m, B);
    let find = |after: &str, before: &str| {
        changes
            .iter()
            .find(|c| c.column == "greedy_pass@1" && c.after == after && c.before == before)
            .unwrap_or_else(|| panic!("no {after} vs {before}"))
    };
    let two = find("sft round 2", "M1");
    assert!((two.change - 8.0 / 40.0).abs() < 1e-12);
    assert_eq!(two.p_value, Some(mcnemar_exact(10, 2)));
    assert_eq!(two.n_problems, 40);
    assert!(two.excludes_zero(), "{two:?}");
    let three = find("sft round 3", "sft round 2");
    assert_eq!((three.change, three.p_value), (0.0, Some(1.0)));
    assert!(!three.excludes_zero());
    assert!(find("sft round 3", "M1").excludes_zero());
    // Round 2 is compared with M1 only (its previous round is M1).
    assert!(
        !changes
            .iter()
            .any(|c| c.after == "sft round 2" && c.before != "M1")
    );
    // No change of the improvement set, which is a comparison with M1 already.
    assert!(
        !changes
            .iter()
            .any(|c| c.column.starts_with("improvement_set"))
    );

    // Another method at the same rounds: paired on the same problems.
    let other = measured(
        &[
            (1, "test", round("test", 40, |i| i < 10)),
            (2, "test", round("test", 40, |i| i < 12)),
        ],
        B,
    );
    let between = method_changes(("dpo", &other), ("sft", &m), 2, B);
    let pass1 = between
        .iter()
        .find(|c| c.column == "greedy_pass@1")
        .unwrap();
    assert_eq!(
        (pass1.before.as_str(), pass1.after.as_str()),
        ("dpo round 2", "sft round 2")
    );
    // dpo round 2 solves p00-p11, sft round 2 p02-p19: sft gains p12-p19, loses p00-p01.
    assert_eq!(pass1.p_value, Some(mcnemar_exact(8, 2)));
    assert!(between.iter().all(|c| c.after.ends_with("round 2")));
}

/// The loop's cross-method summary: the best round by greedy pass@1 (the earlier on a tie),
/// its rows marked, and the figure written (kept under the build's scratch folder to look
/// at).
#[test]
fn summary_marks_each_methods_best_round() {
    let sft = measured(
        &[
            (1, "test", round("test", 40, |i| i < 10)),
            (2, "test", round("test", 40, |i| i < 16)),
            (3, "test", round("test", 40, |i| i < 16)),
        ],
        B,
    );
    let dpo = measured(
        &[
            (1, "test", round("test", 40, |i| i < 10)),
            (2, "test", round("test", 40, |i| i < 8)),
            (3, "test", round("test", 40, |i| i < 9)),
        ],
        B,
    );
    let rows = results::summarize(&[("sft", &sft), ("dpo", &dpo)], ("arith", "test"), &[]);
    let best = |method: &str| -> Vec<u32> {
        let mut rounds: Vec<u32> = rows
            .iter()
            .filter(|r| r.method == method && r.best)
            .map(|r| r.round)
            .collect();
        rounds.dedup();
        rounds
    };
    assert_eq!(best("sft"), [2]);
    assert_eq!(best("dpo"), [1]);
    let columns: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.column.as_str()).collect();
    assert!(
        columns.contains("greedy_pass@1") && columns.contains("pass@4"),
        "{columns:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r.column == "greedy_pass@1")
            .all(|r| r.ci_low.is_some())
    );

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("summary-test");
    std::fs::create_dir_all(&dir).unwrap();
    results::write_summary(&dir, &rows).unwrap();
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(
        csv.contains("sft,2,true,arith,test,greedy_pass@1,0.400000,"),
        "{csv}"
    );
    assert!(dir.join("summary.png").is_file() && dir.join("summary.svg").is_file());
}
