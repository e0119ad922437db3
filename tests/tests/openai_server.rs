//! `harness bench --backend openai` against a real llama.cpp llama-server serving the same
//! GGUF as the embedded engine, without and with a LoRA adapter applied at run time.

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
        // llama-server runs with `-fa off` (see `LlamaServer::start`): so does the engine.
        "--flash-attn",
        "off",
        "--out",
    ];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    harness_ok(&args);
    read_jsonl(&out.join("samples/arith.jsonl"))
}

/// The greedy responses of a bench run's samples, in file order.
fn greedy(samples: &[Value]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| s["sample_index"].is_null())
        .map(|s| s["response"].as_str().unwrap().to_string())
        .collect()
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

/// A LoRA trained by `harness train` (SFT on sums written in an unusual way) is written as
/// `adapter.gguf`; llama.cpp's own `llama-server --lora` applies it over M0 and answers
/// greedily what the embedded engine answers with `--lora` (one request at a time), and the
/// adapter changes what M0 answers.
#[test]
fn a_lora_adapter_gguf_gives_the_same_text_in_llama_server_and_the_embedded_engine() {
    let model = default_model();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sums.jsonl");
    let records: String = (1..=12)
        .map(|i| {
            let (a, b) = (3 * i + 4, 2 * i + 7);
            let record = serde_json::json!({
                "prompt": [{"role": "user", "content": format!("What is {a} plus {b}?")}],
                "completion": format!("Adding up: {a} and {b} together make {}. #### {}", a + b, a + b),
            });
            format!("{record}\n")
        })
        .collect();
    std::fs::write(&data, records).unwrap();
    let trained = dir.path().join("trained");
    harness_ok(&[
        "train",
        "--method",
        "sft",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--lr",
        "2e-3",
        "--epochs",
        "3",
        "--gguf-type",
        "none",
        "--out",
        trained.to_str().unwrap(),
    ]);
    let adapter = trained.join("adapter.gguf");
    assert!(
        !trained.join("model.gguf").exists(),
        "--gguf-type none: no merged model"
    );

    let plain_dir = tempfile::tempdir().unwrap();
    let plain = greedy(&bench(plain_dir.path(), "0", &[]));
    let local_dir = tempfile::tempdir().unwrap();
    let local_samples = bench(
        local_dir.path(),
        "0",
        &["--lora", adapter.to_str().unwrap()],
    );
    let id = local_samples[0]["model"].as_str().unwrap();
    assert!(id.contains("+adapter.gguf@sha256:"), "{id}");
    let local = greedy(&local_samples);
    assert!(
        local.iter().zip(&plain).any(|(a, b)| a != b),
        "the adapter changes no answer of M0:\n{local:#?}"
    );

    let server = LlamaServer::start_with(
        &model,
        "smollm2",
        1,
        &["--lora".as_ref(), adapter.as_os_str()],
    );
    let served_dir = tempfile::tempdir().unwrap();
    let served = greedy(&bench_served(&server, served_dir.path(), "0", "1"));
    assert_eq!(
        served, local,
        "greedy responses with the adapter differ between llama-server --lora and the embedded engine"
    );
}
