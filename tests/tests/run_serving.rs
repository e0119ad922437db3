//! `harness run` on a server: vLLM's runtime LoRA loading (against a fake server that
//! records and checks every request) and a serve hook that restarts a real llama-server on
//! each round's GGUF. (The external trainer is tested in `run_loop.rs`, against its run.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use e2e_tests::{default_model, harness, llama_cpp_tools, read_jsonl, serial, small_loop_args};
use serde_json::Value;

/// The small loop of `run_loop.rs` with one method and extra flags.
fn loop_args(method: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = small_loop_args(out);
    args.extend(
        ["--method", method]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
    );
    args
}

fn run(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    harness(&refs)
}

fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "harness failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One request the fake vLLM server saw: path and JSON body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// How the fake vLLM's runtime adapter endpoints answer.
#[derive(Clone, Copy, PartialEq)]
enum Adapters {
    /// Load and unload succeed, in plain text as vLLM answers.
    Work,
    /// 404 on load, as vLLM without VLLM_ALLOW_RUNTIME_LORA_UPDATING.
    Refused,
    /// Unload fails with 500, as vLLM before its API-only registry does when the worker
    /// already evicted the adapter (max_cpu_loras = max_loras = 1).
    UnloadFails,
}

/// A fake vLLM: /health, /v1/models (the base model plus loaded adapters), the runtime
/// adapter endpoints (see [`Adapters`]), and chat completions with a fixed answer.
fn fake_vllm(base_model: String, adapters: Adapters) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut loaded: Vec<String> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((path, body)) = read_request(&mut stream) else {
                continue;
            };
            let (status, kind, reply) = match path.as_str() {
                "/health" => (200, "application/json", "{}".to_string()),
                "/v1/models" => {
                    let ids: Vec<Value> = std::iter::once(&base_model)
                        .chain(&loaded)
                        .map(|id| serde_json::json!({"id": id, "object": "model"}))
                        .collect();
                    (
                        200,
                        "application/json",
                        serde_json::json!({"data": ids}).to_string(),
                    )
                }
                "/v1/load_lora_adapter" if adapters == Adapters::Refused => (
                    404,
                    "application/json",
                    r#"{"detail":"Not Found"}"#.to_string(),
                ),
                "/v1/load_lora_adapter" => {
                    let name = body["lora_name"].as_str().unwrap_or_default().to_string();
                    loaded.push(name.clone());
                    let text = format!("Success: LoRA adapter '{name}' added successfully.");
                    (200, "text/plain", text)
                }
                "/v1/unload_lora_adapter" if adapters == Adapters::UnloadFails => (
                    500,
                    "application/json",
                    serde_json::json!({"object": "error", "type": "InternalServerError",
                        "message": format!("Failed to remove lora adapter {}", body["lora_name"]),
                        "code": 500})
                    .to_string(),
                ),
                "/v1/unload_lora_adapter" => {
                    let name = body["lora_name"].as_str().unwrap_or_default();
                    loaded.retain(|n| n != name);
                    let text = format!("Success: LoRA adapter '{name}' removed successfully.");
                    (200, "text/plain", text)
                }
                "/v1/chat/completions" => {
                    let reply = serde_json::json!({
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "The answer is 7."}}],
                        "usage": {"prompt_tokens": 50, "completion_tokens": 6},
                    });
                    (200, "application/json", reply.to_string())
                }
                _ => (
                    404,
                    "application/json",
                    r#"{"detail":"Not Found"}"#.to_string(),
                ),
            };
            if path != "/health" && path != "/v1/models" {
                record.lock().unwrap().push((path, body));
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (format!("http://127.0.0.1:{port}/v1"), seen)
}

/// The path and JSON body (Null when none) of one HTTP/1.1 request.
fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Value)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

#[test]
fn lora_hotload_loads_each_rounds_adapter_under_a_new_name_and_unloads_the_last() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let model = default_model();
    let (url, seen) = fake_vllm(model.display().to_string(), Adapters::Work);
    let out = tmp.path().join("hot");
    let served = ["--backend", "openai", "--base-url", &url, "--lora-hotload"];
    assert_ok(&run(&loop_args("sft", &out, &served)));

    let requests = seen.lock().unwrap().clone();
    let admin: Vec<(String, String, String)> = requests
        .iter()
        .filter(|(path, _)| path.contains("lora_adapter"))
        .map(|(path, body)| {
            (
                path.clone(),
                body["lora_name"].as_str().unwrap().to_string(),
                body["lora_path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let adapter = |round: &str| {
        std::path::absolute(out.join(round).join("model/adapter"))
            .unwrap()
            .display()
            .to_string()
    };
    assert_eq!(
        admin,
        vec![
            (
                "/v1/load_lora_adapter".into(),
                "hot-r1".into(),
                adapter("round-1")
            ),
            (
                "/v1/load_lora_adapter".into(),
                "hot-sft-r2".into(),
                adapter("sft/round-2")
            ),
            (
                "/v1/unload_lora_adapter".into(),
                "hot-r1".into(),
                String::new()
            ),
        ]
    );
    // Round 1 (evaluation and training questions) sampled with r1, round 2 with sft-r2.
    let models: Vec<&str> = requests
        .iter()
        .filter(|(path, _)| path == "/v1/chat/completions")
        .map(|(_, body)| body["model"].as_str().unwrap())
        .collect();
    let first_r2 = models.iter().position(|m| *m == "hot-sft-r2").unwrap();
    let load_r2 = requests
        .iter()
        .position(|(p, b)| p.contains("load_lora") && b["lora_name"] == "hot-sft-r2")
        .unwrap();
    let chats_before_load: usize = requests[..load_r2]
        .iter()
        .filter(|(p, _)| p == "/v1/chat/completions")
        .count();
    assert_eq!(
        first_r2, chats_before_load,
        "round 2 sampled only after its load"
    );
    assert!(models[..first_r2].iter().all(|m| *m == "hot-r1"));
    assert!(models[first_r2..].iter().all(|m| *m == "hot-sft-r2"));
    assert_eq!(models.len(), (5 * 3 + 8 * 4) + 5 * 3, "{models:?}");
    for s in read_jsonl(&out.join("sft/round-2/eval/arith.test.jsonl")) {
        assert_eq!(s["model"], "hot-sft-r2");
    }

    // A server that refuses runtime adapters stops the run with its answer and the fix.
    let (refusing, _) = fake_vllm(model.display().to_string(), Adapters::Refused);
    let m1 = out.join("round-1/model");
    let mut args = loop_args("sft", &tmp.path().join("refused"), &[]);
    args.extend(
        [
            "--backend",
            "openai",
            "--base-url",
            &refusing,
            "--lora-hotload",
            "--m1",
            m1.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let failed = run(&args);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("HTTP 404 Not Found: Not Found"), "{err}");
    assert!(
        err.contains("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve")
            && err.contains("--enable-lora"),
        "{err}"
    );

    // A server whose unload fails (the adapter already evicted) warns and goes on; a
    // server that sees the run directory elsewhere is sent paths there.
    let (evicting, seen) = fake_vllm(model.display().to_string(), Adapters::UnloadFails);
    let mut args = loop_args("sft", &tmp.path().join("evicted"), &[]);
    let map = format!("{}=/srv/runs", tmp.path().display());
    args.extend(
        [
            "--backend",
            "openai",
            "--base-url",
            &evicting,
            "--lora-hotload",
            "--adapter-path-map",
            &map,
            "--m1",
            m1.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let done = run(&args);
    assert_ok(&done);
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        err.contains("could not unload adapter evicted-r1")
            && err.contains("Failed to remove lora adapter"),
        "{err}"
    );
    let unloads = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path == "/v1/unload_lora_adapter")
        .count();
    assert_eq!(unloads, 1);
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path == "/v1/load_lora_adapter")
        .map(|(_, body)| body["lora_path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths.last().map(String::as_str),
        Some("/srv/runs/evicted/sft/round-2/model/adapter"),
        "{paths:?}"
    );
    assert!(
        paths.iter().all(|p| p.starts_with("/srv/runs/")),
        "{paths:?}"
    );
    assert!(tmp.path().join("evicted/sft/round-2/eval").is_dir());
}

/// Kills the hook's last server when the test ends.
struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// Stops the previous llama-server, starts one on the round's GGUF under the served name.
const HOOK_SCRIPT: &str = r#"if [ -f "$PIDFILE" ]; then
  old=$(cat "$PIDFILE"); kill "$old" 2>/dev/null
  while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
fi
echo "hook round=$HARNESS_ROUND checkpoint=$HARNESS_CHECKPOINT gguf=$HARNESS_GGUF adapter=$HARNESS_ADAPTER"
"$LLAMA_SERVER" -m "$HARNESS_GGUF" --alias "$HARNESS_SERVED_MODEL" --host 127.0.0.1 --port "$PORT" \
  -np 4 -c 8192 --flash-attn off --no-cache-prompt > "$SERVER_LOG" 2>&1 &
echo $! > "$PIDFILE"
"#;

#[test]
fn a_serve_hook_restarts_llama_server_on_each_rounds_gguf() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let server = llama_cpp_tools().join("llama-server");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pidfile = PidFile(tmp.path().join("server.pid"));
    let script = tmp.path().join("hook.sh");
    std::fs::write(&script, HOOK_SCRIPT).unwrap();
    let hook = format!(
        "PIDFILE={} LLAMA_SERVER={} PORT={port} SERVER_LOG={} sh {}",
        pidfile.0.display(),
        server.display(),
        tmp.path().join("server.log").display(),
        script.display()
    );
    let out = tmp.path().join("hooked");
    let url = format!("http://127.0.0.1:{port}/v1");
    let extra = [
        "--backend",
        "openai",
        "--base-url",
        &url,
        "--serve-hook",
        &hook,
        "--eval-base",
        "--concurrency",
        "4",
    ];
    assert_ok(&run(&loop_args("sft", &out, &extra)));

    let log = std::fs::read_to_string(out.join("serve-hook.log")).unwrap();
    let starts: Vec<&str> = log.lines().filter(|l| l.starts_with("hook ")).collect();
    let abs = |p: PathBuf| std::path::absolute(p).unwrap().display().to_string();
    assert_eq!(
        starts,
        vec![
            format!(
                "hook round=0 checkpoint=m0 gguf={} adapter=",
                abs(default_model())
            ),
            format!(
                "hook round=1 checkpoint=r1 gguf={} adapter={}",
                abs(out.join("round-1/model/model.gguf")),
                abs(out.join("round-1/model/adapter"))
            ),
            format!(
                "hook round=2 checkpoint=sft-r2 gguf={} adapter={}",
                abs(out.join("sft/round-2/model/model.gguf")),
                abs(out.join("sft/round-2/model/adapter"))
            ),
        ]
    );
    let greedy = |file: PathBuf, model: &str| -> Vec<String> {
        read_jsonl(&file)
            .into_iter()
            .inspect(|s| assert_eq!(s["model"], model, "{}", file.display()))
            .filter(|s| s["sample_index"].is_null())
            .map(|s| s["response"].as_str().unwrap().to_string())
            .collect()
    };
    let m0 = greedy(out.join("round-0/eval/arith.test.jsonl"), "hooked-m0");
    let m1 = greedy(out.join("round-1/eval/arith.test.jsonl"), "hooked-r1");
    greedy(
        out.join("sft/round-2/eval/arith.test.jsonl"),
        "hooked-sft-r2",
    );
    // The restarted server answered with M1's weights: its greedy answers are the embedded
    // engine's on M1's GGUF (one request at a time they are identical; four at once, a
    // prompt split differently can part one), not M0's.
    let local = tmp.path().join("local");
    let m1_gguf = out.join("round-1/model/model.gguf");
    let bench = [
        "bench",
        "--task",
        "arith",
        "--split",
        "test",
        "--limit",
        "3",
        "--n",
        "0",
        "--max-tokens",
        "80",
        // The hook's llama-server runs with `--flash-attn off`.
        "--flash-attn",
        "off",
        "--model",
        m1_gguf.to_str().unwrap(),
        "--out",
        local.to_str().unwrap(),
    ];
    assert_ok(&harness(&bench));
    let local_samples = local.join("samples/arith.jsonl");
    let local_model = read_jsonl(&local_samples)[0]["model"].clone();
    let embedded = greedy(local_samples, local_model.as_str().unwrap());
    let same = m1.iter().zip(&embedded).filter(|(a, b)| a == b).count();
    let as_m0 = m1.iter().zip(&m0).filter(|(a, b)| a == b).count();
    eprintln!("M1 greedy: {same} of 3 as the embedded engine's, {as_m0} as M0's");
    assert!(
        same >= 2 && same > as_m0,
        "server M1 {m1:#?}\nembedded M1 {embedded:#?}\nM0 {m0:#?}"
    );
    drop(pidfile);
}

/// `harness ARGS` run from the repository's root, as the study's README runs it.
fn harness_at_root(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::process::Command::new(e2e_tests::harness_bin())
        .args(args)
        .current_dir(root)
        .env_remove("HARNESS_DATA_DIR")
        .output()
        .unwrap()
}

#[test]
fn dry_run_checks_the_study_config_against_a_server_and_runs_nothing() {
    let model = default_model();
    let (url, seen) = fake_vllm("mistral-7b".into(), Adapters::Work);
    let config = "experiments/arith-smollm2/gsm8k-7b-vllm.toml";
    let m0 = model.display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("never-made");
    let out_flag = out_dir.display().to_string();
    let base = [
        "run",
        "--config",
        config,
        "--dry-run",
        "--model",
        &m0,
        "--out",
        &out_flag,
    ];
    let args: Vec<&str> = base.iter().copied().chain(["--base-url", &url]).collect();
    let ok = harness_at_root(&args);
    let stdout = assert_ok(&ok);
    for line in [
        "ok    settings  5 rounds of sft, dpo, sft-dpo on gsm8k, backend openai, trainer external",
        "ok    data      1000 training questions (gsm8k:train), 1319 gsm8k:test, 1000 svamp:test, 500 math:math500",
        "serves `mistral-7b`",
        "ok    trainer   `python3 scripts/trl-train.py --bf16`",
        "each model before round 5 samples the training questions 50000 times (x 50)",
        "dry run: every check passed",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    // Asked only whether the server is up and serves M0: nothing sampled, nothing loaded.
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        paths.iter().all(|p| p == "/health" || p == "/v1/models"),
        "{paths:?}"
    );
    assert!(!out_dir.exists(), "a dry run wrote its run directory");

    // A server that is down, M0 missing, a trainer script that is not there: each named.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let bad: Vec<&str> = base
        .iter()
        .copied()
        .map(|a| if a == m0 { "/nonexistent/M0" } else { a })
        .chain(["--base-url", &down])
        .chain(["--train-cmd", "python3 scripts/no-such-trainer.py"])
        .collect();
    let failed = harness_at_root(&bad);
    assert!(!failed.status.success());
    let stdout = String::from_utf8_lossy(&failed.stdout);
    for line in [
        "FAIL  M0        --model /nonexistent/M0: not found",
        "FAIL  server    ",
        "FAIL  trainer   --train-cmd: `scripts/no-such-trainer.py` not found",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    assert!(String::from_utf8_lossy(&failed.stderr).contains("3 of 5 checks failed"));
}
