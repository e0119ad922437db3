//! Telling a server what to serve between rounds: waiting until a (re)started server is
//! healthy and lists a model, and vLLM's runtime LoRA endpoints
//! (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`, enabled by
//! `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora`). vLLM answers these two with
//! plain text on success and a JSON error otherwise, so replies are read as text.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{OpenAi, describe};
use crate::error::{BackendError, Result};

/// Longest wait for one probe of a starting server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl OpenAi {
    /// Asks for `model` from now on, once every server is healthy and lists it, waiting up
    /// to `timeout` (a restarted 7B server takes minutes). The error says what the servers
    /// answered last.
    pub fn serve(&mut self, model: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for base in self.config.base_urls.clone() {
            self.runtime
                .block_on(self.wait_listed(&base, model, deadline))?;
        }
        self.config.model = model.to_string();
        Ok(())
    }

    async fn wait_listed(&self, base: &str, model: &str, deadline: Instant) -> Result<()> {
        let base = base.trim_end_matches('/');
        let root = base.trim_end_matches("/v1");
        let models_url = format!("{base}/models");
        loop {
            let state = match self.probe(&format!("{root}/health")).await {
                Ok((503, _)) => "loading (HTTP 503 on /health)".to_string(),
                Ok(_) => match self.probe(&models_url).await {
                    Ok((200, body)) => {
                        let served = served_ids(&body);
                        if served.iter().any(|id| id == model) {
                            return Ok(());
                        }
                        format!("serves {}", served.join(", "))
                    }
                    Ok((status, body)) => format!("/v1/models: HTTP {status}: {}", snippet(&body)),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(BackendError::Http {
                    url: models_url,
                    message: format!("`{model}` not served before the deadline; last: {state}"),
                    attempts: 1,
                    retryable: true,
                });
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// One GET: status and body, or why the server could not be reached.
    async fn probe(&self, url: &str) -> std::result::Result<(u16, String), String> {
        let mut request = self.client.get(url).timeout(PROBE_TIMEOUT);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", describe(&e)))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Ok((status, body))
    }

    /// Loads a PEFT adapter folder under `name` on every server (vLLM). A name already
    /// loaded counts as loaded: names are never reused for another folder by the loop.
    pub fn load_lora_adapter(&self, name: &str, path: &Path) -> Result<()> {
        let body = serde_json::json!({
            "lora_name": name,
            "lora_path": path.to_string_lossy(),
        });
        self.admin_post("load_lora_adapter", &body, "has already been loaded")
    }

    /// Unloads an adapter from every server (vLLM); one that is not loaded counts as
    /// unloaded.
    pub fn unload_lora_adapter(&self, name: &str) -> Result<()> {
        let body = serde_json::json!({ "lora_name": name });
        self.admin_post("unload_lora_adapter", &body, "cannot be found")
    }

    /// POSTs `body` to `endpoint` of every base URL; a refusal whose message contains
    /// `benign` is success.
    fn admin_post(&self, endpoint: &str, body: &serde_json::Value, benign: &str) -> Result<()> {
        for base in &self.config.base_urls {
            let url = format!("{}/{endpoint}", base.trim_end_matches('/'));
            self.runtime.block_on(async {
                let mut request = self.client.post(&url).json(body).timeout(PROBE_TIMEOUT * 6);
                if let Some(key) = &self.config.api_key {
                    request = request.bearer_auth(key);
                }
                let response = request.send().await.map_err(|e| BackendError::Http {
                    url: url.clone(),
                    message: describe(&e),
                    attempts: 1,
                    retryable: true,
                })?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let message = error_message(&text);
                if status.is_success() || message.contains(benign) {
                    return Ok(());
                }
                Err(BackendError::Http {
                    url: url.clone(),
                    message: format!("HTTP {status}: {message}"),
                    attempts: 1,
                    retryable: false,
                })
            })?;
        }
        Ok(())
    }
}

/// The model ids of a `/v1/models` body.
pub(super) fn served_ids(body: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    value["data"]
        .as_array()
        .map(|models| {
            models
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The message of an error reply: vLLM's `{"error": {"message"}}` or `{"message"}`,
/// FastAPI's `{"detail"}`, or the text itself.
fn error_message(text: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        for pointer in ["/error/message", "/message", "/detail"] {
            if let Some(message) = value.pointer(pointer).and_then(|v| v.as_str()) {
                return message.to_string();
            }
        }
    }
    snippet(text)
}

fn snippet(text: &str) -> String {
    text.trim().chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_json_or_text() {
        assert_eq!(
            error_message(
                r#"{"object":"error","message":"The lora adapter 'a' has already been loaded.","code":400}"#
            ),
            "The lora adapter 'a' has already been loaded."
        );
        assert_eq!(
            error_message(r#"{"error":{"message":"boom","type":"BadRequestError"}}"#),
            "boom"
        );
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_message("Internal Server Error\n"),
            "Internal Server Error"
        );
        assert_eq!(
            served_ids(r#"{"data":[{"id":"a"},{"id":"b"}]}"#),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
