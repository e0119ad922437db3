//! `harness bench --backend openai` against a real llama.cpp llama-server serving the same
//! GGUF as the embedded engine.

use std::path::Path;

use e2e_tests::{LlamaServer, default_model, harness_ok, read_jsonl};
use serde_json::Value;

/// `harness bench` on 4 arith problems, greedy plus `n` samples each.
fn bench(out: &Path, n: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "bench",
        "--task",
        "arith",
        "--limit",
        "4",
        "--n",
        n,
        "--max-tokens",
        "64",
        "--out",
    ];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    harness_ok(&args);
    read_jsonl(&out.join("samples/arith.jsonl"))
}

/// [`bench`] through the OpenAI backend against `server`, `concurrency` requests at a time.
fn bench_served(server: &LlamaServer, out: &Path, n: &str, concurrency: &str) -> Vec<Value> {
    let url = server.base_url.as_str();
    let args = [
        "--backend",
        "openai",
        "--base-url",
        url,
        "--model",
        "smollm2",
        "--concurrency",
        concurrency,
    ];
    bench(out, n, &args)
}

#[test]
fn bench_against_llama_server_matches_the_embedded_engine() {
    let model = default_model();
    let server = LlamaServer::start(&model, "smollm2", 4);
    let served = tempfile::tempdir().unwrap();
    let remote = bench_served(&server, served.path(), "2", "4");
    assert_eq!(remote.len(), 12);
    for s in &remote {
        assert_eq!(s["backend"], "openai");
        assert_eq!(s["model"], "smollm2");
        assert!(
            s["correct"].is_boolean() && !s["response"].as_str().unwrap().is_empty(),
            "{s}"
        );
        assert!(s["prompt_tokens"].as_u64().unwrap() > 20);
    }
    // Greedy decoding of the same GGUF with the same chat template, tokenisation and attention
    // kernel gives the same text, one request at a time. (Many requests at once, llama-server
    // may decode a prompt in pieces beside other prompts; that parted 1 of 50 gsm8k problems.)
    let one_by_one = tempfile::tempdir().unwrap();
    let remote_greedy = bench_served(&server, one_by_one.path(), "0", "1");
    let local_dir = tempfile::tempdir().unwrap();
    let local = bench(local_dir.path(), "2", &[]);
    let greedy = |samples: &[Value]| -> Vec<String> {
        samples
            .iter()
            .filter(|s| s["sample_index"].is_null())
            .map(|s| s["response"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (greedy(&remote_greedy), greedy(&local));
    assert_eq!(a.len(), 4);
    assert_eq!(
        a, b,
        "greedy responses differ between llama-server and the embedded engine"
    );
    // The batched run's greedy responses are real and mostly the same too.
    let batched = greedy(&remote);
    let same = batched.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same >= 3, "{same} of 4 identical:\n{batched:#?}\n{b:#?}");
}
