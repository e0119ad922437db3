//! Any OpenAI-compatible server (vLLM, llama.cpp's llama-server, ...): `/v1/completions` for
//! raw prompts, `/v1/chat/completions` for chat, every sampling field sent explicitly,
//! bounded concurrency spread over one or several base URLs by requests in flight, a timeout
//! per request, replies streamed (server-sent events) so that a request whose server falls
//! silent for `idle_timeout` is retried, and retries with exponential backoff and jitter on
//! connection errors, silence, 429 (honouring Retry-After) and 5xx.

mod admin;
mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;

use crate::Backend;
use crate::error::{BackendError, Result};
use crate::request::{Completion, Request};

/// Environment variable read for the API key when none is given.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Settings of the OpenAI-compatible backend.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URLs ending in `/v1`; requests go to the one with the fewest in flight.
    pub base_urls: Vec<String>,
    /// The served model id.
    pub model: String,
    /// Bearer token (default: `OPENAI_API_KEY`).
    pub api_key: Option<String>,
    /// Requests in flight at once, over all base URLs.
    pub concurrency: usize,
    /// Limit for one HTTP request.
    pub timeout: Duration,
    /// Limit on silence: a request whose server sends no byte for this long (a hung
    /// connection) is abandoned and retried.
    pub idle_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubled per retry, with jitter, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Ask for all samples of a request in one call with `n` (vLLM seeds choice j with
    /// `seed + j`); off: one call per sample, each with its own seed.
    pub native_n: bool,
}

impl OpenAiConfig {
    /// Defaults for a server and model.
    pub fn new(base_urls: Vec<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_urls,
            model: model.into(),
            api_key: std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty()),
            concurrency: 16,
            timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(60),
            max_retries: 6,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            native_n: false,
        }
    }
}

/// The OpenAI-compatible backend.
pub struct OpenAi {
    config: OpenAiConfig,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    in_flight: Vec<AtomicUsize>,
}

/// One HTTP call: a request's contiguous run of sample indices.
#[derive(Debug, Clone)]
struct Call {
    request: usize,
    first: u32,
    count: u32,
}

impl OpenAi {
    /// Connects, and checks that the server is up and serves the model.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let backend = Self::unchecked(config)?;
        for base in &backend.config.base_urls {
            backend.runtime.block_on(backend.check_served(base))?;
        }
        Ok(backend)
    }

    /// A client that does not contact the server yet: for a server that is started later
    /// (a restart hook), followed by [`OpenAi::serve`] before the first request.
    pub fn unchecked(config: OpenAiConfig) -> Result<Self> {
        if config.base_urls.is_empty() {
            return Err(BackendError::Callback("no --base-url given".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| BackendError::Engine(format!("HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| BackendError::Engine(format!("tokio runtime: {e}")))?;
        Ok(OpenAi {
            in_flight: config
                .base_urls
                .iter()
                .map(|_| AtomicUsize::new(0))
                .collect(),
            config,
            client,
            runtime,
        })
    }

    /// `GET /health` where the server has one (llama-server, vLLM: 503 while the model
    /// loads, retried), then `GET /v1/models`: the server answers and lists the model.
    async fn check_served(&self, base: &str) -> Result<()> {
        let root = base.trim_end_matches('/').trim_end_matches("/v1");
        self.wait_healthy(&format!("{root}/health")).await?;
        let url = format!("{}/models", base.trim_end_matches('/'));
        let body: serde_json::Value = self.send_with_retries(&url, None).await?;
        let served = admin::served_ids(&body.to_string());
        if served.iter().any(|id| id == &self.config.model) {
            Ok(())
        } else {
            Err(BackendError::ModelNotServed {
                url,
                model: self.config.model.clone(),
                served: served.join(", "),
            })
        }
    }

    /// Waits while `/health` answers 503 (model loading) or cannot be reached, within the
    /// retry budget. Any other answer (200, or 404 from a server without the endpoint)
    /// passes: `/v1/models` decides.
    async fn wait_healthy(&self, url: &str) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let message = match self.client.get(url).send().await {
                Ok(response) if response.status().as_u16() != 503 => return Ok(()),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(e) => format!("server unreachable: {}", describe(&e)),
            };
            if attempt > self.config.max_retries {
                return Err(BackendError::Http {
                    url: url.to_string(),
                    message,
                    attempts: attempt,
                    retryable: true,
                });
            }
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// The base URL with the fewest requests in flight, marked busy until the guard drops.
    fn pick_endpoint(&self) -> (usize, InFlight<'_>) {
        let index = (0..self.in_flight.len())
            .min_by_key(|&i| self.in_flight[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        self.in_flight[index].fetch_add(1, Ordering::Relaxed);
        (index, InFlight(&self.in_flight[index]))
    }

    /// Sends one request (GET without a body, POST with one), retrying what can be retried.
    async fn send_with_retries<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (outcome, retry_after) = self.send_once(url, body).await;
            match outcome {
                Ok(value) => return Ok(value),
                Err((message, retryable)) => {
                    if !retryable || attempt > self.config.max_retries {
                        return Err(BackendError::Http {
                            url: url.to_string(),
                            message,
                            attempts: attempt,
                            retryable,
                        });
                    }
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(url, attempt, ?wait, "retrying: {message}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Exponential backoff with ±50% jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1) as i32);
        let capped = base.min(self.config.max_backoff.as_secs_f64());
        Duration::from_secs_f64(capped * rand::rng().random_range(0.5..1.5))
    }

    /// One attempt: the parsed body, or (message, whether a retry can help), plus the
    /// server's Retry-After.
    async fn send_once<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> (std::result::Result<T, (String, bool)>, Option<Duration>) {
        let mut request = match body {
            Some(body) => self.client.post(url).json(body),
            None => self.client.get(url),
        };
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let idle = self.config.idle_timeout;
        let response = match tokio::time::timeout(idle, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return (Err((describe(&e), true)), None),
            Err(_) => return (Err((silence(idle, "waiting for the reply"), true)), None),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = match read_body(response, streamed, idle).await {
            Ok(text) => text,
            Err(message) => return (Err((message, true)), retry_after),
        };
        if !status.is_success() {
            let retryable = status.as_u16() == 429 || status.is_server_error();
            let snippet: String = text.chars().take(200).collect();
            return (
                Err((format!("HTTP {status}: {snippet}"), retryable)),
                retry_after,
            );
        }
        match serde_json::from_str(&text) {
            Ok(value) => (Ok(value), None),
            // A truncated or garbled body is a transport fault as far as we can tell.
            Err(e) => (Err((format!("malformed reply: {e}"), true)), None),
        }
    }

    /// Runs one call, falling back to one-sample calls for choices the server left out.
    async fn run_call(&self, requests: &[Request], call: Call) -> Result<Vec<Completion>> {
        let request = &requests[call.request];
        let (endpoint, _busy) = self.pick_endpoint();
        let base = self.config.base_urls[endpoint].trim_end_matches('/');
        let (url, body) = wire::body(base, &self.config.model, request, call.first, call.count);
        let reply: wire::Reply = self.send_with_retries(&url, Some(&body)).await?;
        let mut completions = reply.completions(call.request, request, call.first, call.count);
        drop(_busy);
        if completions.len() < call.count as usize {
            let have: Vec<u32> = completions.iter().map(|c| c.index).collect();
            for index in call.first..call.first + call.count {
                if !have.contains(&index) {
                    let single = Call {
                        request: call.request,
                        first: index,
                        count: 1,
                    };
                    let mut one = Box::pin(self.run_call(requests, single)).await?;
                    completions.append(&mut one);
                }
            }
        }
        Ok(completions)
    }
}

/// Decrements an endpoint's in-flight count when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The body as JSON text, read chunk by chunk so that silence longer than `idle` fails the
/// attempt; a streamed (server-sent events) body is assembled into the JSON of a plain one.
async fn read_body(
    response: reqwest::Response,
    streamed: bool,
    idle: Duration,
) -> std::result::Result<String, String> {
    let mut chunks = response.bytes_stream();
    let mut plain = Vec::new();
    let mut events = wire::StreamedReply::default();
    loop {
        let chunk = match tokio::time::timeout(idle, chunks.next()).await {
            Err(_) => return Err(silence(idle, "in the middle of the reply")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(describe(&e)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if streamed {
            events.feed(&chunk)?;
        } else {
            plain.extend_from_slice(&chunk);
        }
    }
    if streamed {
        events.finish().map(|reply| reply.to_string())
    } else {
        Ok(String::from_utf8_lossy(&plain).into_owned())
    }
}

fn silence(idle: Duration, when: &str) -> String {
    format!("the server sent nothing for {idle:?} {when} (idle timeout)")
}

fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    if error.is_timeout() {
        message.push_str(" (timed out)");
    }
    message
}

/// Splits requests into calls: contiguous runs of indices (one call per index unless
/// native `n` is on).
fn plan_calls(requests: &[Request], native_n: bool) -> Vec<Call> {
    let mut calls = Vec::new();
    for (request, r) in requests.iter().enumerate() {
        let mut indices = r.indices.clone();
        indices.sort_unstable();
        indices.dedup();
        let mut i = 0;
        while i < indices.len() {
            let first = indices[i];
            let mut count = 1;
            while native_n
                && i + (count as usize) < indices.len()
                && indices[i + count as usize] == first + count
            {
                count += 1;
            }
            calls.push(Call {
                request,
                first,
                count,
            });
            i += count as usize;
        }
    }
    calls
}

impl Backend for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn model_id(&self) -> String {
        self.config.model.clone()
    }

    fn generate(
        &mut self,
        requests: &[Request],
        on_completion: &mut dyn FnMut(Completion) -> Result<()>,
    ) -> Result<()> {
        let _span = tracing::info_span!("openai.generate", requests = requests.len()).entered();
        let calls = plan_calls(requests, self.config.native_n);
        let this = &*self;
        this.runtime.block_on(async {
            let mut results = futures::stream::iter(calls)
                .map(|call| this.run_call(requests, call))
                .buffer_unordered(this.config.concurrency.max(1));
            while let Some(result) = results.next().await {
                for completion in result? {
                    on_completion(completion)?;
                }
            }
            Ok(())
        })
    }

    fn load_checkpoint(&mut self, checkpoint: &std::path::Path) -> Result<()> {
        // A server serves what it was started with (or an adapter loaded through its own
        // API); the checkpoint's name is the model id asked for from now on.
        self.config.model = checkpoint.to_string_lossy().into_owned();
        for base in self.config.base_urls.clone() {
            self.runtime.block_on(self.check_served(&base))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Prompt, Sampling};

    fn request(indices: Vec<u32>) -> Request {
        Request {
            prompt: Prompt::Text("x".into()),
            sampling: Sampling::default(),
            seed: 10,
            indices,
        }
    }

    #[test]
    fn calls_cover_every_index_once() {
        let requests = vec![request(vec![0, 1, 2, 5, 6]), request(vec![3])];
        let native = plan_calls(&requests, true);
        let runs: Vec<(usize, u32, u32)> = native
            .iter()
            .map(|c| (c.request, c.first, c.count))
            .collect();
        assert_eq!(runs, vec![(0, 0, 3), (0, 5, 2), (1, 3, 1)]);
        assert_eq!(plan_calls(&requests, false).len(), 6);
    }
}
