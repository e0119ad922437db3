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

/// llama.cpp and the trainer use every core (OpenMP threads spin at barriers): two engines
/// decoding or training at once on a 2-core machine slowed each other down a hundredfold.
/// The tests of a test binary that decode or train hold this lock, so they take turns.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
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

/// The JSON objects of a JSON Lines file (a sample file).
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
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

/// llama.cpp's own tools (llama-server, llama-batched-bench), built from the sources in the
/// llama-cpp-python sdist by `scripts/build-llama-cpp-tools.sh` (cached after the first
/// build, which takes about five minutes).
pub fn llama_cpp_tools() -> PathBuf {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-llama-cpp-tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run the build script");
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
}

/// The default model file (fetched on first use).
pub fn default_model() -> PathBuf {
    PathBuf::from(harness_ok(&["fetch"]).trim())
}

/// A running llama-server, stopped when dropped.
pub struct LlamaServer {
    child: std::process::Child,
    pub base_url: String,
}

impl LlamaServer {
    /// Starts llama-server on a free loopback port serving `model` as `alias` with
    /// `parallel` slots, and waits until it answers /health.
    ///
    /// Plain attention (`-fa off`: llama-server's flash attention changes its arithmetic with
    /// the batch's shape; tests comparing it with the embedded engine run that with
    /// `--flash-attn off` too) and no prompt cache (with it, 38 of 50 gsm8k greedy
    /// responses matched the embedded engine's; without it 49 and 50 in two runs).
    pub fn start(model: &std::path::Path, alias: &str, parallel: u32) -> LlamaServer {
        Self::start_with(model, alias, parallel, &[])
    }

    /// [`LlamaServer::start`] with more llama-server arguments (`--lora FILE`).
    pub fn start_with(
        model: &std::path::Path,
        alias: &str,
        parallel: u32,
        extra: &[&std::ffi::OsStr],
    ) -> LlamaServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let bin = llama_cpp_tools().join("llama-server");
        let child = Command::new(&bin)
            .args(["-m"])
            .arg(model)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--alias",
                alias,
            ])
            .args([
                "-np",
                &parallel.to_string(),
                "-c",
                &(parallel * 2048).to_string(),
                "--flash-attn",
                "off",
                "--no-cache-prompt",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let server = LlamaServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if http_get_status(port, "/health") == Some(200) {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("llama-server on port {port} did not become healthy");
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of a plain HTTP GET on loopback.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// `harness run` on a small loop of the default model: 2 rounds, 8 training questions
/// sampled 4 times, 3 test and 2 OOD problems (greedy + 2), 80 tokens, LoRA rank 4, fast
/// learning rates, no SentenceBERT; output in `out`.
pub fn small_loop_args(out: &std::path::Path) -> Vec<String> {
    let model = default_model();
    [
        "run",
        "--task",
        "arith",
        "--rounds",
        "2",
        "--train-limit",
        "8",
        "--eval-limit",
        "3",
        "--ood-limit",
        "2",
        "--n-train",
        "4",
        "--n-eval",
        "2",
        "--max-tokens",
        "80",
        "--parallel",
        "8",
        "--epochs",
        "2",
        "--m1-epochs",
        "2",
        "--lr",
        "1e-3",
        "--dpo-lr",
        "1e-4",
        "--lora-rank",
        "4",
        "--train-batch-size",
        "4",
        "--no-semantic",
        "--model",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        model.display().to_string(),
        "--out".to_string(),
        out.display().to_string(),
    ])
    .collect()
}
