//! Reports on real runs of the default model: `harness bench` writes metrics.csv,
//! rounds.csv, improvement_set.csv, coverage.csv and plots; `harness report` recomputes the
//! same files from the samples (also after re-grading); a two-round directory gets its
//! improvement set; `harness compare` lines runs up.

use std::collections::HashMap;
use std::path::Path;

use e2e_tests::{harness, harness_ok, read_jsonl, serial};
use serde_json::Value;

const REPORTS: [&str; 4] = [
    "metrics.csv",
    "rounds.csv",
    "improvement_set.csv",
    "coverage.csv",
];

fn bench(out: &Path, seed: &str) {
    harness_ok(&[
        "bench",
        "--task",
        "arith",
        "--limit",
        "4",
        "--n",
        "4",
        "--max-tokens",
        "48",
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// metrics.csv as (task, split, round, metric, subset, k) -> (value, n_problems).
type Metrics = HashMap<(String, String, String, String, String, String), (String, String)>;

fn metrics(dir: &Path) -> Metrics {
    let mut reader = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let s = |i: usize| r[i].to_string();
            ((s(3), s(4), s(5), s(7), s(8), s(9)), (s(10), s(11)))
        })
        .collect()
}

fn value(m: &Metrics, round: &str, metric: &str, subset: &str, k: &str) -> f64 {
    let key = (
        "arith".into(),
        "test".into(),
        round.into(),
        metric.into(),
        subset.into(),
        k.into(),
    );
    m.get(&key)
        .unwrap_or_else(|| panic!("no {key:?}"))
        .0
        .parse()
        .unwrap_or_else(|_| panic!("{key:?} undefined"))
}

/// Exact pass@k from n samples with c correct.
fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    let choose = |n: u64, k: u64| -> f64 {
        if k > n {
            0.0
        } else {
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        }
    };
    1.0 - choose(n - c, k) / choose(n, k)
}

#[test]
fn report_reproduces_what_bench_wrote_and_measures_the_improvement_set() {
    let _serial = serial();
    let run = tempfile::tempdir().unwrap();
    bench(run.path(), "1234");
    for file in REPORTS {
        assert!(run.path().join(file).is_file(), "{file} missing");
    }
    for stem in ["accuracy", "pass_at_k", "diversity", "levels"] {
        for ext in ["png", "svg"] {
            let path = run.path().join(format!("{stem}.{ext}"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                bytes.len() > 2000,
                "{} is {} bytes",
                path.display(),
                bytes.len()
            );
        }
    }
    let written: Vec<Vec<u8>> = REPORTS
        .iter()
        .map(|f| std::fs::read(run.path().join(f)).unwrap())
        .collect();

    // The numbers agree with the samples.
    let samples = read_jsonl(&run.path().join("samples/arith.jsonl"));
    let m = metrics(run.path());
    let greedy: Vec<&Value> = samples
        .iter()
        .filter(|s| s["sample_index"].is_null())
        .collect();
    let greedy_right = greedy.iter().filter(|s| s["correct"] == true).count();
    let greedy_pass = value(&m, "0", "greedy_pass@1", "all", "");
    assert!((greedy_pass - greedy_right as f64 / 4.0).abs() < 1e-6);
    let right = samples
        .iter()
        .filter(|s| !s["sample_index"].is_null() && s["correct"] == true)
        .count();
    assert!((value(&m, "0", "coverage_pooled", "all", "") - right as f64 / 16.0).abs() < 1e-6);
    let diversity = value(&m, "0", "distinct_n", "incorrect", "");
    assert!(diversity > 0.0 && diversity <= 1.0);
    let semantic = value(&m, "0", "sbert_diversity", "incorrect", "");
    assert!(semantic > 0.0 && semantic < 1.0, "{semantic}");

    // `harness report` recomputes the same files, with and without re-grading.
    for file in REPORTS {
        std::fs::remove_file(run.path().join(file)).unwrap();
    }
    harness_ok(&["report", run.path().to_str().unwrap()]);
    for (file, before) in REPORTS.iter().zip(&written) {
        let after = std::fs::read(run.path().join(file)).unwrap();
        assert!(
            after == *before,
            "{file} differs after report:\n{}",
            String::from_utf8_lossy(&after)
        );
    }
    harness_ok(&["report", "--regrade", run.path().to_str().unwrap()]);
    for (file, before) in REPORTS.iter().zip(&written) {
        assert!(
            std::fs::read(run.path().join(file)).unwrap() == *before,
            "{file} differs after --regrade"
        );
    }

    // A two-round directory: round 1 is the run above, round 2 answers every problem
    // greedily right. IS(2) is then round 1's greedy failures, and round 1's pass@k on it
    // follows from round 1's samples of those problems.
    let rounds = tempfile::tempdir().unwrap();
    std::fs::create_dir(rounds.path().join("samples")).unwrap();
    let mut lines = Vec::new();
    for s in &samples {
        let mut one = s.clone();
        one["round"] = 1.into();
        lines.push(one);
    }
    for s in &greedy {
        let mut two = (*s).clone();
        two["round"] = 2.into();
        two["correct"] = true.into();
        lines.push(two);
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(rounds.path().join("samples/arith.jsonl"), text).unwrap();
    harness_ok(&["report", "--no-semantic", rounds.path().to_str().unwrap()]);
    let failures: Vec<&str> = greedy
        .iter()
        .filter(|s| s["correct"] == false)
        .map(|s| s["problem_id"].as_str().unwrap())
        .collect();
    let mut reader = csv::Reader::from_path(rounds.path().join("improvement_set.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3, "k = 1, 2, 4");
    for row in &rows {
        assert_eq!(&row[3], "2");
        assert_eq!(row[4].parse::<usize>().unwrap(), failures.len());
        let k: u64 = row[5].parse().unwrap();
        let expected: Vec<f64> = failures
            .iter()
            .map(|id| {
                let c = samples
                    .iter()
                    .filter(|s| {
                        s["problem_id"] == *id
                            && !s["sample_index"].is_null()
                            && s["correct"] == true
                    })
                    .count() as u64;
                pass_at_k(4, c, k)
            })
            .collect();
        if expected.is_empty() {
            assert_eq!(&row[6], "");
        } else {
            let mean = expected.iter().sum::<f64>() / expected.len() as f64;
            assert!(
                (row[6].parse::<f64>().unwrap() - mean).abs() < 1e-6,
                "{row:?} vs {mean}"
            );
        }
    }
    let m = metrics(rounds.path());
    assert_eq!(value(&m, "2", "greedy_pass@1", "all", ""), 1.0);
    assert!(!m.keys().any(|k| k.3 == "sbert_diversity"), "--no-semantic");
}

#[test]
fn compare_lines_runs_up_and_measures_greedy_agreement() {
    let _serial = serial();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    bench(a.path(), "1234");
    // Another seed draws other samples; greedy decoding does not depend on it.
    bench(b.path(), "99");
    let out = tempfile::tempdir().unwrap();
    let stdout = harness_ok(&[
        "compare",
        a.path().to_str().unwrap(),
        b.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("greedy agreement") && stdout.contains("same answer 4/4"),
        "{stdout}"
    );
    assert!(stdout.contains("identical response 4/4"), "{stdout}");
    let mut reader = csv::Reader::from_path(out.path().join("pass_k.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let runs: Vec<String> = [a.path(), b.path()]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(&header[5], runs[0]);
    assert_eq!(&header[6], runs[1]);
    // Each run's column holds its own metrics.csv value.
    let ma = metrics(a.path());
    let mb = metrics(b.path());
    for record in reader.records() {
        let r = record.unwrap();
        if &r[3] != "all" {
            continue;
        }
        let k = &r[4];
        let va = value(&ma, "0", "pass@k", "all", k);
        let vb = value(&mb, "0", "pass@k", "all", k);
        assert!((r[5].parse::<f64>().unwrap() - va).abs() < 1e-9);
        assert!((r[6].parse::<f64>().unwrap() - vb).abs() < 1e-9);
    }
    for file in [
        "greedy_pass_1.csv",
        "greedy_pass_1.png",
        "greedy_pass_1.svg",
        "agreement.csv",
        "throughput.csv",
    ] {
        assert!(out.path().join(file).is_file(), "{file}");
    }
    // A directory without metrics.csv is refused with the command that makes one.
    let empty = tempfile::tempdir().unwrap();
    let refused = harness(&[
        "compare",
        a.path().to_str().unwrap(),
        empty.path().to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("harness report"));
}
