//! `harness bench` on the real default model through the embedded llama.cpp engine: the
//! run directory's contents, and continuing an interrupted run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{harness_bin, harness_ok, read_jsonl, serial};
use serde_json::Value;

const ARGS: [&str; 12] = [
    "bench",
    "--task",
    "arith",
    "--limit",
    "3",
    "--n",
    "2",
    "--max-tokens",
    "40",
    "--parallel",
    "4",
    "--out",
];

fn bench(out: &Path) -> String {
    let mut args = ARGS.to_vec();
    args.push(out.to_str().unwrap());
    harness_ok(&args)
}

fn csv_row(path: &Path) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = text.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let values: Vec<&str> = rows.next().unwrap().split(',').collect();
    header
        .iter()
        .map(|h| h.to_string())
        .zip(values.iter().map(|v| v.to_string()))
        .collect()
}

#[test]
fn bench_writes_graded_samples_and_a_consistent_summary() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let stdout = bench(dir.path());
    assert!(stdout.contains("greedy pass@1"), "{stdout}");
    let samples = read_jsonl(&dir.path().join("samples/arith.jsonl"));
    assert_eq!(samples.len(), 9);
    let greedy: Vec<&Value> = samples
        .iter()
        .filter(|s| s["sample_index"].is_null())
        .collect();
    assert_eq!(greedy.len(), 3);
    for s in &samples {
        assert_eq!(s["backend"], "llamacpp");
        assert!(s["model"].as_str().unwrap().contains("@sha256:"));
        assert!(s["correct"].is_boolean() && s["rule"].is_string(), "{s}");
        assert!(s["prompt"].as_array().is_some_and(|m| m.len() == 2));
        let tokens = s["completion_tokens"].as_u64().unwrap();
        assert!(tokens > 0 && tokens <= 40);
        let finish = s["finish_reason"].as_str().unwrap();
        assert!(
            finish == "stop" || (finish == "length" && tokens == 40),
            "{s}"
        );
        let expected_seed = 1234 + s["sample_index"].as_u64().unwrap_or(0);
        assert_eq!(s["seed"].as_u64(), Some(expected_seed));
        let temperature = s["sampling"]["temperature"].as_f64().unwrap();
        assert_eq!(temperature == 0.0, s["sample_index"].is_null());
    }
    // The summary agrees with the graded samples.
    let row = csv_row(&dir.path().join("summary.csv"));
    let greedy_correct = greedy.iter().filter(|s| s["correct"] == true).count();
    let greedy_pass: f64 = row["greedy_pass@1"].parse().unwrap();
    assert!(
        (greedy_pass - greedy_correct as f64 / 3.0).abs() < 1e-6,
        "{row:?}"
    );
    let sampled_correct = samples
        .iter()
        .filter(|s| !s["sample_index"].is_null() && s["correct"] == true)
        .count();
    let pass1: f64 = row["pass@1"].parse().unwrap();
    assert!(
        (pass1 - sampled_correct as f64 / 6.0).abs() < 1e-6,
        "{row:?}"
    );
    assert_eq!(row["problems"], "3");
    assert!(row.contains_key("pass@2") && row.contains_key("tokens_per_s"));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["settings"]["n"], 2);
}

#[test]
fn an_interrupted_run_continues_to_the_same_sample_file() {
    let _serial = serial();
    let whole = tempfile::tempdir().unwrap();
    bench(whole.path());

    let cut = tempfile::tempdir().unwrap();
    let samples = cut.path().join("samples/arith.jsonl");
    let mut args = ARGS.to_vec();
    args.push(cut.path().to_str().unwrap());
    let mut child = Command::new(harness_bin()).args(&args).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let count = |p: &Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    while count(&samples) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let written = count(&samples);
    assert!(
        (3..9).contains(&written),
        "killed after {written} of 9 samples"
    );
    // A line torn by the kill.
    let mut text = std::fs::read_to_string(&samples).unwrap();
    text.push_str("{\"task\": \"arith\", \"probl");
    std::fs::write(&samples, text).unwrap();

    let stdout = bench(cut.path());
    assert!(stdout.contains("greedy pass@1"));
    assert_eq!(
        std::fs::read_to_string(&samples).unwrap(),
        std::fs::read_to_string(whole.path().join("samples/arith.jsonl")).unwrap()
    );
}

#[test]
fn a_run_directory_refuses_other_settings() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    bench(dir.path());
    let out = Command::new(harness_bin())
        .args([
            "bench",
            "--task",
            "arith",
            "--limit",
            "3",
            "--n",
            "3",
            "--max-tokens",
            "40",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
}
