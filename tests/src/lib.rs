//! Helpers for the end-to-end tests in `tests/tests/`, which drive the real `harness`
//! binary as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `harness` binary built by `cargo test --workspace` (or `cargo build -p harness`).
pub fn harness_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/harness
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("harness"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} not found: run `cargo test --workspace` (which builds it) or `cargo build -p harness`",
        bin.display()
    );
    bin
}

/// Runs `harness ARGS` and returns its output.
pub fn harness(args: &[&str]) -> Output {
    Command::new(harness_bin())
        .args(args)
        .env_remove("HARNESS_DATA_DIR")
        .output()
        .expect("run harness")
}

/// Runs `harness ARGS`, asserts success, and returns stdout.
pub fn harness_ok(args: &[&str]) -> String {
    let out = harness(args);
    assert!(
        out.status.success(),
        "harness {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// The accuracy line of a split in `harness grade` output: (correct, total).
pub fn split_score(stdout: &str, split: &str) -> (usize, usize) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(split))
        .unwrap_or_else(|| panic!("no line for split {split} in:\n{stdout}"));
    let fraction = line.split_whitespace().nth(1).expect("correct/total");
    let (correct, total) = fraction.split_once('/').expect("correct/total");
    (correct.parse().unwrap(), total.parse().unwrap())
}
