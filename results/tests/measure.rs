//! Every metric on small hand-made sample sets whose values are worked out here.

use std::collections::HashMap;

use benchmarks::Sample;
use results::stats::Bootstrap;
use results::{Embedder, Metric, MetricRow, ProblemGroups, SampleSet, measure};

/// (problem, sample index or None for greedy, correct, text, tokens, hit max_tokens)
type Line<'a> = (&'a str, Option<u32>, bool, &'a str, u32, bool);

fn samples(lines: &[Line]) -> Vec<Sample> {
    lines
        .iter()
        .map(|(id, index, correct, text, tokens, hit)| Sample {
            task: "arith".into(),
            split: "test".into(),
            problem_id: id.to_string(),
            sample_index: *index,
            correct: Some(*correct),
            response: text.to_string(),
            completion_tokens: Some(*tokens),
            finish_reason: Some(if *hit { "length" } else { "stop" }.into()),
            ..Sample::default()
        })
        .collect()
}

fn set<'a>(
    round: u32,
    samples: &'a [Sample],
    groups: &'a HashMap<String, ProblemGroups>,
) -> SampleSet<'a> {
    SampleSet {
        task: "arith".into(),
        split: "test".into(),
        round,
        samples,
        groups,
    }
}

fn find<'a>(rows: &'a [MetricRow], round: u32, column: &str) -> &'a MetricRow {
    rows.iter()
        .find(|r| r.round == round && r.column() == column)
        .unwrap_or_else(|| panic!("no {column} in round {round}"))
}

fn value(rows: &[MetricRow], round: u32, column: &str) -> Option<f64> {
    find(rows, round, column).value
}

fn close(actual: Option<f64>, expected: f64, what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{what}: undefined, expected {expected}"));
    assert!(
        (actual - expected).abs() < 1e-12,
        "{what}: {actual}, expected {expected}"
    );
}

/// Gives each text a fixed vector: texts starting "a b" point one way, "a c" another.
struct TableEmbedder;

impl Embedder for TableEmbedder {
    fn embed(&mut self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| match &t[..t.len().min(3)] {
                "a b" => vec![1.0, 0.0],
                "a c" => vec![0.0, 1.0],
                _ => vec![0.6, 0.8],
            })
            .collect())
    }
}

fn groups() -> HashMap<String, ProblemGroups> {
    let level = |l| ProblemGroups {
        level: Some(l),
        subject: None,
    };
    HashMap::from([
        ("p1".to_string(), level(1)),
        ("p2".to_string(), level(2)),
        ("p3".to_string(), level(2)),
    ])
}

/// Round 1: p1 greedy right, half of 4 samples right; p2 greedy wrong, none of 4 right;
/// p3 greedy right, both of its 2 samples right (fewer samples than the others).
fn round_one() -> Vec<Sample> {
    samples(&[
        ("p1", None, true, "g1", 10, false),
        ("p1", Some(0), true, "a b <<2+3=5>>", 4, false),
        ("p1", Some(1), true, "a c <<2+3=5>>", 4, false),
        ("p1", Some(2), false, "q", 4, false),
        ("p1", Some(3), false, "q", 4, true),
        ("p2", None, false, "g2", 20, true),
        ("p2", Some(0), false, "m n", 4, false),
        ("p2", Some(1), false, "m n", 4, false),
        ("p2", Some(2), false, "m o", 4, false),
        ("p2", Some(3), false, "p", 4, false),
        ("p3", None, true, "g3", 30, false),
        ("p3", Some(0), true, "x y z", 4, false),
        ("p3", Some(1), true, "x y z", 4, false),
    ])
}

#[test]
fn one_round_by_hand() {
    let groups = groups();
    let one = round_one();
    let m = measure(
        &[set(1, &one, &groups)],
        Some(&mut TableEmbedder),
        Bootstrap::default(),
    )
    .unwrap();
    let rows = &m.metrics;

    close(value(rows, 1, "greedy_pass@1"), 2.0 / 3.0, "greedy pass@1");
    close(value(rows, 1, "greedy_pass@1[level=1]"), 1.0, "level 1");
    close(value(rows, 1, "greedy_pass@1[level=2]"), 0.5, "level 2");
    // pass@1 = mean(2/4, 0/4, 2/2); pass@2: p1 1 - C(2,2)/C(4,2) = 5/6, p2 0, p3 1;
    // pass@4 (k = n): p1 1, p2 0, and p3 (2 samples) is left out.
    close(value(rows, 1, "pass@1"), 0.5, "pass@1");
    close(
        value(rows, 1, "pass@2"),
        (5.0 / 6.0 + 0.0 + 1.0) / 3.0,
        "pass@2",
    );
    close(value(rows, 1, "pass@4"), 0.5, "pass@4");
    assert_eq!(find(rows, 1, "pass@4").n_problems, 2);
    assert_eq!(find(rows, 1, "pass@2").n_problems, 3);
    // Level 2 holds p2 and p3: pass@2 (0 + 1) / 2.
    close(value(rows, 1, "pass@2[level=2]"), 0.5, "pass@2 level 2");

    // GD = (1 - 0.5) / 1.
    close(
        value(rows, 1, "group_disparity[level=1 vs level=2]"),
        0.5,
        "GD",
    );

    // Coverage: 4 right of 10 samples; per question (0.5 + 0 + 1) / 3.
    close(value(rows, 1, "coverage_pooled"), 0.4, "coverage pooled");
    close(
        value(rows, 1, "coverage_per_question"),
        0.5,
        "coverage per question",
    );
    let c = &m.coverage[0];
    assert_eq!((c.questions, c.samples, c.correct), (3, 10, 4));

    // Distinct-N of correct responses: p1 ["a b <<2+3=5>>", "a c <<2+3=5>>"]: unigrams 4/6,
    // bigrams 4/4, trigrams 2/2 -> 8/9; p3 two identical "x y z" -> 1/2; p2 has none.
    close(
        value(rows, 1, "distinct_n[correct]"),
        (8.0 / 9.0 + 0.5) / 2.0,
        "distinct-n correct",
    );
    assert_eq!(find(rows, 1, "distinct_n[correct]").n_problems, 2);
    // Incorrect: p1 ["q", "q"] -> 1/2; p2 ["m n", "m n", "m o", "p"]: unigrams 4/7, bigrams
    // 2/3 -> 13/21; p3 has none.
    close(
        value(rows, 1, "distinct_n[incorrect]"),
        (0.5 + 13.0 / 21.0) / 2.0,
        "distinct-n incorrect",
    );
    // Equations: only p1's correct responses have any, the same one twice.
    close(
        value(rows, 1, "distinct_equations[correct]"),
        0.5,
        "distinct equations",
    );
    assert_eq!(find(rows, 1, "distinct_equations[correct]").n_problems, 1);
    assert_eq!(value(rows, 1, "distinct_equations[incorrect]"), None);
    assert_eq!(find(rows, 1, "distinct_equations[incorrect]").n_problems, 0);
    // Semantic: p1's correct pair is orthogonal (1), p3's identical (0).
    close(
        value(rows, 1, "sbert_diversity[correct]"),
        0.5,
        "sbert correct",
    );
    // Incorrect: every text maps to the same vector -> 0 for p1 and p2.
    close(
        value(rows, 1, "sbert_diversity[incorrect]"),
        0.0,
        "sbert incorrect",
    );

    // Lengths: greedy 10, 20, 30 with one at max_tokens; sampled all 4 with one of 10.
    close(
        value(rows, 1, "mean_response_tokens[greedy]"),
        20.0,
        "greedy tokens",
    );
    close(
        value(rows, 1, "max_tokens_share[greedy]"),
        1.0 / 3.0,
        "greedy share",
    );
    close(
        value(rows, 1, "mean_response_tokens[sampled]"),
        4.0,
        "sampled tokens",
    );
    close(
        value(rows, 1, "max_tokens_share[sampled]"),
        0.1,
        "sampled share",
    );

    // No second round: no improvement set.
    assert!(m.improvement.is_empty());
    assert!(!rows.iter().any(|r| r.metric == Metric::ImprovementSetSize));
}

#[test]
fn improvement_set_against_round_one() {
    let groups = groups();
    let one = round_one();
    // Round 2 newly solves p2 (and loses p3); round 3 solves only what round 1 did.
    let two = samples(&[
        ("p1", None, true, "g", 1, false),
        ("p2", None, true, "g", 1, false),
        ("p3", None, false, "g", 1, false),
    ]);
    let three = samples(&[
        ("p1", None, true, "g", 1, false),
        ("p2", None, false, "g", 1, false),
        ("p3", None, true, "g", 1, false),
    ]);
    let sets = [
        set(1, &one, &groups),
        set(2, &two, &groups),
        set(3, &three, &groups),
    ];
    let m = measure(&sets, None, Bootstrap::default()).unwrap();
    let rows = &m.metrics;
    // IS(2) = {p2}: round 1 never sampled a right answer for it, so pass@k is 0 at every k.
    close(value(rows, 2, "improvement_set_size"), 1.0, "|IS(2)|");
    for k in [1, 2, 4] {
        close(
            value(rows, 2, &format!("is_round1_pass@{k}")),
            0.0,
            "round 1 on IS(2)",
        );
    }
    // IS(3) is empty: the value is undefined, over no problem.
    close(value(rows, 3, "improvement_set_size"), 0.0, "|IS(3)|");
    assert_eq!(value(rows, 3, "is_round1_pass@1"), None);
    assert_eq!(find(rows, 3, "is_round1_pass@1").n_problems, 0);
    let ks: Vec<(u32, u64, usize)> = m
        .improvement
        .iter()
        .map(|r| (r.round, r.k, r.is_size))
        .collect();
    assert_eq!(
        ks,
        vec![
            (2, 1, 1),
            (2, 2, 1),
            (2, 4, 1),
            (3, 1, 0),
            (3, 2, 0),
            (3, 4, 0)
        ]
    );
    // Rounds with greedy answers only have no sampled metrics and no coverage.
    assert!(
        !rows
            .iter()
            .any(|r| r.round == 2 && r.metric == Metric::PassAtK)
    );
    assert_eq!(m.coverage.len(), 1);
    // Round 2: greedy 2/3; level 2 (p2 right, p3 wrong) 0.5; GD (1 - 0.5) / 1.
    close(value(rows, 2, "greedy_pass@1"), 2.0 / 3.0, "round 2 greedy");
    close(
        value(rows, 2, "group_disparity[level=1 vs level=2]"),
        0.5,
        "round 2 GD",
    );
}

#[test]
fn edge_cases() {
    let none: HashMap<String, ProblemGroups> = HashMap::new();
    // One response per problem, all correct: pass@1 = 1, only k = 1, coverage 1, no
    // diversity (a question needs two responses), no groups and so no disparity.
    let all_right = samples(&[
        ("p1", Some(0), true, "a", 1, false),
        ("p2", Some(0), true, "b", 1, false),
    ]);
    let m = measure(
        &[set(1, &all_right, &none)],
        Some(&mut TableEmbedder),
        Bootstrap::default(),
    )
    .unwrap();
    let rows = &m.metrics;
    close(value(rows, 1, "pass@1"), 1.0, "pass@1");
    assert!(!rows.iter().any(|r| r.column() == "pass@2"));
    assert!(!rows.iter().any(|r| r.metric == Metric::GreedyPass1));
    assert!(!rows.iter().any(|r| r.metric == Metric::GroupDisparity));
    close(value(rows, 1, "coverage_pooled"), 1.0, "coverage");
    for column in [
        "distinct_n[correct]",
        "sbert_diversity[correct]",
        "distinct_n[incorrect]",
    ] {
        assert_eq!(value(rows, 1, column), None, "{column}");
        assert_eq!(find(rows, 1, column).n_problems, 0);
    }

    // None correct: pass@k 0 everywhere, coverage 0; a lowest level at 0 leaves GD undefined.
    let levels = HashMap::from([
        (
            "p1".to_string(),
            ProblemGroups {
                level: Some(1),
                subject: Some("Algebra".into()),
            },
        ),
        (
            "p2".to_string(),
            ProblemGroups {
                level: Some(5),
                subject: Some("Algebra".into()),
            },
        ),
    ]);
    let all_wrong = samples(&[
        ("p1", None, false, "a", 1, false),
        ("p1", Some(0), false, "a", 1, false),
        ("p1", Some(1), false, "b", 1, false),
        ("p2", None, false, "a", 1, false),
        ("p2", Some(0), false, "a", 1, false),
        ("p2", Some(1), false, "a", 1, false),
    ]);
    let m = measure(&[set(1, &all_wrong, &levels)], None, Bootstrap::default()).unwrap();
    let rows = &m.metrics;
    close(value(rows, 1, "pass@2"), 0.0, "pass@2");
    close(
        value(rows, 1, "greedy_pass@1[subject=Algebra]"),
        0.0,
        "subject",
    );
    close(value(rows, 1, "coverage_pooled"), 0.0, "coverage");
    assert_eq!(value(rows, 1, "group_disparity[level=1 vs level=5]"), None);
    // No embedder: no semantic rows at all.
    assert!(!rows.iter().any(|r| r.metric == Metric::SbertDiversity));
    // Distinct-N of incorrect: p1 ["a", "b"] -> 1; p2 ["a", "a"] -> 1/2.
    close(value(rows, 1, "distinct_n[incorrect]"), 0.75, "distinct-n");

    // An empty set measures to nothing; an ungraded response is an error naming it.
    assert!(
        measure(&[set(1, &[], &none)], None, Bootstrap::default())
            .unwrap()
            .metrics
            .is_empty()
    );
    let mut ungraded = samples(&[("p9", Some(0), true, "a", 1, false)]);
    ungraded[0].correct = None;
    let error = measure(&[set(1, &ungraded, &none)], None, Bootstrap::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("p9") && error.contains("ungraded"),
        "{error}"
    );
}

#[test]
fn group_disparity_spans_a_tasks_splits_from_level_1_to_the_hardest() {
    let greedy = |id: &str, split: &str, correct: bool| Sample {
        task: "arith".into(),
        split: split.into(),
        problem_id: id.into(),
        round: 1,
        response: "x".into(),
        correct: Some(correct),
        ..Sample::default()
    };
    let test = vec![
        greedy("a", "test", true),
        greedy("b", "test", true),
        greedy("c", "test", false),
    ];
    let ood = vec![greedy("d", "ood", false), greedy("e", "ood", true)];
    let level = |l| ProblemGroups {
        level: Some(l),
        subject: None,
    };
    let test_groups: HashMap<String, ProblemGroups> = [("a", 1), ("b", 1), ("c", 3)]
        .iter()
        .map(|(i, l)| (i.to_string(), level(*l)))
        .collect();
    let ood_groups: HashMap<String, ProblemGroups> = [("d", 5), ("e", 5)]
        .iter()
        .map(|(i, l)| (i.to_string(), level(*l)))
        .collect();
    // The OOD set first, as sample files sorted by name give it.
    let sets = [
        SampleSet {
            task: "arith".into(),
            split: "ood".into(),
            round: 1,
            samples: &ood,
            groups: &ood_groups,
        },
        SampleSet {
            task: "arith".into(),
            split: "test".into(),
            round: 1,
            samples: &test,
            groups: &test_groups,
        },
    ];
    let m = measure(&sets, None, Bootstrap::default()).unwrap();
    let row = m
        .metrics
        .iter()
        .find(|r| r.metric == Metric::GroupDisparity && r.split == "test+ood")
        .expect("a cross-split row");
    // level 1: 2/2, level 5: 1/2 -> (1 - 0.5) / 1.
    assert_eq!(row.subset, "level=1 vs level=5");
    assert!((row.value.unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(row.n_problems, 4);
}
