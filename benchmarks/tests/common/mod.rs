//! Helpers shared by the sandbox's test files: a sandbox with small limits, a job, and the
//! checks that a program was contained (no process and no file left behind).

#![allow(dead_code)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use benchmarks::sandbox::{Job, Outcome};
use benchmarks::{Sandbox, SandboxConfig};

/// Sandbox tests run one at a time so that the leftover-process check sees only its own.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        timeout: Duration::from_secs(4),
        cpu_seconds: 3,
        memory_bytes: 512 << 20,
        max_file_bytes: 4 << 20,
        output_bytes: 4096,
        parallel: 2,
        ..SandboxConfig::default()
    })
    .unwrap()
}

/// A job whose test passes only if `f(1) == 2`.
pub fn job(code: &str) -> Job {
    Job {
        code: code.to_string(),
        tests: "assert f(1) == 2\n".to_string(),
        entry_point: "f".to_string(),
    }
}

/// Processes started by the sandbox (all share the runner's command line) still alive.
pub fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        // The runner's argument, not the judge's (whose `-c` source mentions runner.py).
        let runner = cmdline.split(|b| *b == 0).any(|arg| arg == b"runner.py");
        if !zombie && runner {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

pub fn assert_no_leftovers(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        leftovers().is_empty(),
        "{name}: processes left behind: {:?}",
        leftovers()
    );
}

pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Runs a program against `assert f(1) == 2` and checks it left no process and no file
/// outside its directory.
pub fn run_contained(sandbox: &Sandbox, name: &str, code: &str) -> Outcome {
    run_job_contained(sandbox, name, &job(code))
}

/// Runs a job and checks it left no process and no file outside its directory.
pub fn run_job_contained(sandbox: &Sandbox, name: &str, job: &Job) -> Outcome {
    let outcome = sandbox.run(job);
    eprintln!(
        "{name}: {} [network {}] {:?}",
        outcome.reason, outcome.network, outcome.wall
    );
    assert!(!outcome.reason.is_empty(), "{name}: no reason");
    assert_no_leftovers(name);
    let outside: Vec<_> = std::fs::read_dir(sandbox.root())
        .unwrap()
        .flatten()
        .collect();
    assert!(
        outside.is_empty(),
        "{name}: left files in the sandbox root: {outside:?}"
    );
    outcome
}

/// Runs a hostile program: contained, and marked incorrect.
pub fn run_hostile(sandbox: &Sandbox, name: &str, code: &str) -> Outcome {
    let outcome = run_contained(sandbox, name, code);
    assert!(
        !outcome.passed,
        "{name}: a hostile program passed: {outcome:?}"
    );
    outcome
}
