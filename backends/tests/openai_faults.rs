//! The OpenAI-compatible backend against a small fake server that injects faults: 500s,
//! 429 with Retry-After, dropped connections, replies slower than the timeout, malformed
//! JSON, fewer choices than asked, and streams that fall silent mid-reply. Replies are
//! streamed as server-sent events, as vLLM and llama-server stream them. No sample may be lost or duplicated, and each must
//! carry the seed it was asked with. (The real-server tests use llama.cpp's llama-server.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backends::{Backend, BackendError, OpenAi, OpenAiConfig, Prompt, Request, Sampling};
use serde_json::{Value, json};

/// What the fake server does with the k-th completion request (k from 0).
#[derive(Clone, Copy, Debug)]
enum Fault {
    Ok,
    Status500,
    Status429,
    Drop,
    Slow,
    Malformed,
    FewerChoices,
    /// A correct reply after 150 ms (inside the timeout): a busy server.
    Lag,
    /// The first event of a streamed reply, then silence with the connection held open.
    Stall,
}

struct FakeServer {
    url: String,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Value>>>,
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Value)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let path = first.split_whitespace().nth(1)?.to_string();
    Some((path, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

fn respond(stream: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

/// Server-sent events of `reply`: each choice's text in two pieces (as `text` for
/// completions, `delta.content` for chat), the finish reason, the usage, `[DONE]`; after
/// `events` events the stream stops and the connection is held for `hold`.
fn stream_reply(stream: &mut TcpStream, body: &Value, choices: u64, events: usize, hold: Duration) {
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    let seed = body["seed"].as_u64().unwrap();
    let chat = body.get("messages").is_some();
    let piece = |i: u64, text: &str, reason: Value| {
        let choice = if chat {
            json!({"index": i, "delta": {"content": text}, "finish_reason": reason})
        } else {
            json!({"index": i, "text": text, "finish_reason": reason})
        };
        json!({"choices": [choice]}).to_string()
    };
    let mut lines = Vec::new();
    for i in 0..choices {
        lines.push(piece(i, "seed=", Value::Null));
        lines.push(piece(i, &(seed + i).to_string(), Value::Null));
        lines.push(piece(i, "", json!("stop")));
    }
    let usage = json!({"prompt_tokens": 7, "completion_tokens": 3 * choices});
    lines.push(json!({"choices": [], "usage": usage}).to_string());
    lines.push("[DONE]".into());
    for (k, line) in lines.iter().enumerate() {
        if k == events {
            let _ = stream.flush();
            std::thread::sleep(hold);
            return;
        }
        let _ = write!(stream, "data: {line}\n\n");
        let _ = stream.flush();
    }
}

/// A choice's text names the seed it was drawn with, so mix-ups are visible.
fn reply(body: &Value, choices: u64) -> String {
    let seed = body["seed"].as_u64().unwrap();
    let items: Vec<Value> = (0..choices)
        .map(|i| json!({"index": i, "message": {"role": "assistant", "content": format!("seed={}", seed + i)}, "finish_reason": "stop"}))
        .collect();
    json!({"choices": items, "usage": {"prompt_tokens": 7, "completion_tokens": 3 * choices}})
        .to_string()
}

fn start(script: Vec<Fault>, model: &str) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (calls2, seen2, model) = (calls.clone(), seen.clone(), model.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (calls, seen, script, model) =
                (calls2.clone(), seen2.clone(), script.clone(), model.clone());
            std::thread::spawn(move || {
                let Some((path, body)) = read_request(&mut stream) else {
                    return;
                };
                if path == "/health" {
                    return respond(&mut stream, "200 OK", "", "{\"status\":\"ok\"}");
                }
                if path.ends_with("/models") {
                    let models = json!({"object": "list", "data": [{"id": model}]}).to_string();
                    return respond(&mut stream, "200 OK", "", &models);
                }
                let k = calls.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().push(body.clone());
                let n = body["n"].as_u64().unwrap_or(1);
                let all = usize::MAX;
                match script.get(k).copied().unwrap_or(Fault::Ok) {
                    Fault::Ok if body["stream"] == json!(true) => {
                        stream_reply(&mut stream, &body, n, all, Duration::ZERO)
                    }
                    Fault::Ok => respond(&mut stream, "200 OK", "", &reply(&body, n)),
                    Fault::Stall => stream_reply(&mut stream, &body, n, 1, Duration::from_secs(30)),
                    Fault::Status500 => respond(
                        &mut stream,
                        "500 Internal Server Error",
                        "",
                        "{\"error\":\"boom\"}",
                    ),
                    Fault::Status429 => respond(
                        &mut stream,
                        "429 Too Many Requests",
                        "Retry-After: 0\r\n",
                        "{}",
                    ),
                    Fault::Drop => drop(stream),
                    Fault::Slow => {
                        std::thread::sleep(Duration::from_millis(1500));
                        respond(&mut stream, "200 OK", "", &reply(&body, n));
                    }
                    Fault::Malformed => respond(&mut stream, "200 OK", "", "{\"choices\": [{\"ind"),
                    Fault::FewerChoices => respond(&mut stream, "200 OK", "", &reply(&body, 1)),
                    Fault::Lag => {
                        std::thread::sleep(Duration::from_millis(150));
                        respond(&mut stream, "200 OK", "", &reply(&body, n));
                    }
                }
            });
        }
    });
    FakeServer { url, calls, seen }
}

fn config(url: &str, native_n: bool) -> OpenAiConfig {
    let mut config = OpenAiConfig::new(vec![url.to_string()], "m");
    config.timeout = Duration::from_millis(500);
    config.backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(50);
    config.concurrency = 4;
    config.native_n = native_n;
    config
}

fn requests() -> Vec<Request> {
    (0..5)
        .map(|i| Request {
            prompt: Prompt::Text(format!("question {i}")),
            sampling: Sampling {
                temperature: 0.7,
                max_tokens: 9,
                ..Sampling::default()
            },
            seed: 1000 * i,
            indices: (0..4).collect(),
        })
        .collect()
}

fn run(backend: &mut OpenAi) -> Result<Vec<(usize, u32, u64, String)>, BackendError> {
    let mut got = Vec::new();
    backend.generate(&requests(), &mut |c| {
        got.push((c.request, c.index, c.seed, c.text));
        Ok(())
    })?;
    got.sort();
    Ok(got)
}

fn assert_complete(got: &[(usize, u32, u64, String)]) {
    let expected: Vec<(usize, u32)> = (0..5).flat_map(|r| (0..4).map(move |j| (r, j))).collect();
    let keys: Vec<(usize, u32)> = got.iter().map(|g| (g.0, g.1)).collect();
    assert_eq!(keys, expected, "lost or duplicated samples");
    for (request, index, seed, text) in got {
        assert_eq!(*seed, 1000 * *request as u64 + u64::from(*index));
        assert_eq!(text, &format!("seed={seed}"));
    }
}

#[test]
fn every_fault_is_retried_and_no_sample_is_lost_or_duplicated() {
    use Fault::*;
    let script = vec![
        Status500, Status429, Drop, Slow, Malformed, Ok, Status500, Drop,
    ];
    let server = start(script, "m");
    let mut backend = OpenAi::new(config(&server.url, false)).unwrap();
    assert_complete(&run(&mut backend).unwrap());
    // 20 samples, one call each, plus one retry per injected fault.
    assert_eq!(server.calls.load(Ordering::SeqCst), 20 + 7);
    let first = &server.seen.lock().unwrap()[0];
    for field in [
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "max_tokens",
        "seed",
        "n",
    ] {
        assert!(
            first.get(field).is_some(),
            "{field} not sent explicitly: {first}"
        );
    }
}

/// A server that stops sending in the middle of a streamed reply (connection open, no
/// bytes): the request is retried after the idle timeout, not held until the request
/// timeout, and every sample arrives once.
#[test]
fn a_silent_stream_is_retried_after_the_idle_timeout() {
    use Fault::*;
    let server = start(vec![Stall, Ok, Stall, Stall, Ok], "m");
    let mut config = config(&server.url, false);
    config.timeout = Duration::from_secs(30);
    config.idle_timeout = Duration::from_millis(300);
    let mut backend = OpenAi::new(config).unwrap();
    let started = std::time::Instant::now();
    let got = run(&mut backend).unwrap();
    let elapsed = started.elapsed();
    assert_complete(&got);
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        20 + 3,
        "three stalled calls retried"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "stalled requests were held for {elapsed:?}, not the 0.3 s idle timeout"
    );
    // Every request asked for a stream with the usage in its last event.
    for body in server.seen.lock().unwrap().iter() {
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
    }
}

#[test]
fn native_n_falls_back_to_single_calls_for_missing_choices() {
    // The first call is always one of the five n=4 calls (they go out before any fallback).
    let server = start(vec![Fault::FewerChoices], "m");
    let mut backend = OpenAi::new(config(&server.url, true)).unwrap();
    assert_complete(&run(&mut backend).unwrap());
    // 5 calls with n=4; one returned 1 choice, so 3 single-sample calls follow.
    assert_eq!(server.calls.load(Ordering::SeqCst), 5 + 3);
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.iter().filter(|b| b["n"] == 4).count(), 5);
}

#[test]
fn a_persistent_failure_is_a_clear_error_naming_the_endpoint() {
    let server = start(vec![Fault::Status500; 100], "m");
    let mut config = config(&server.url, false);
    config.max_retries = 2;
    let mut backend = OpenAi::new(config).unwrap();
    let err = run(&mut backend).unwrap_err().to_string();
    assert!(
        err.contains(&server.url) && err.contains("500") && err.contains("3 attempt"),
        "{err}"
    );
}

#[test]
fn down_server_and_unserved_model_are_reported_plainly() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = config(&format!("http://127.0.0.1:{port}/v1"), false);
    down.max_retries = 1;
    let err = OpenAi::new(down).err().unwrap().to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}/health")) && err.contains("unreachable"),
        "{err}"
    );
    let server = start(vec![], "other-model");
    let err = OpenAi::new(config(&server.url, false))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model `m` is not served") && err.contains("other-model"),
        "{err}"
    );
}

#[test]
fn several_base_urls_share_the_load_by_requests_in_flight() {
    // A slow server and a quick one: requests go where the fewest are in flight, so both
    // serve some, the quick one most, and every sample arrives exactly once.
    let slow = start(vec![Fault::Lag; 20], "m");
    let quick = start(vec![], "m");
    let mut config = config(&slow.url, false);
    config.base_urls.push(quick.url.clone());
    let mut backend = OpenAi::new(config).unwrap();
    assert_complete(&run(&mut backend).unwrap());
    let (slow_calls, quick_calls) = (
        slow.calls.load(Ordering::SeqCst),
        quick.calls.load(Ordering::SeqCst),
    );
    assert_eq!(
        slow_calls + quick_calls,
        20,
        "one call per sample (n=1 requests)"
    );
    assert!(slow_calls >= 1, "the first URL got nothing");
    assert!(
        quick_calls > slow_calls,
        "slow {slow_calls} vs quick {quick_calls}: load not spread by requests in flight"
    );
}
