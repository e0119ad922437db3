//! The JSON of OpenAI-compatible requests and replies.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::request::{Completion, FinishReason, Prompt, Request};

/// (URL, body) of a call for `count` samples starting at index `first`.
pub(super) fn body(
    base: &str,
    model: &str,
    request: &Request,
    first: u32,
    count: u32,
) -> (String, Value) {
    let s = &request.sampling;
    let mut body = json!({
        "model": model,
        "n": count,
        "seed": request.seed_of(first),
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "stream": false,
        // Extra fields that vLLM and llama-server accept; -1 / 0 disable them in both.
        "top_k": if s.top_k == 0 { -1 } else { s.top_k as i64 },
        "min_p": s.min_p,
    });
    if s.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    if !s.stop.is_empty() {
        body["stop"] = json!(s.stop);
    }
    match &request.prompt {
        Prompt::Chat(messages) => {
            body["messages"] = json!(messages);
            (format!("{base}/chat/completions"), body)
        }
        Prompt::Text(text) => {
            body["prompt"] = json!(text);
            (format!("{base}/completions"), body)
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Reply {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl Reply {
    /// The completions of a reply; choice i is sample `first + i`. Choices outside the
    /// asked range or repeated are dropped, so nothing is duplicated.
    pub(super) fn completions(
        self,
        request_index: usize,
        request: &Request,
        first: u32,
        count: u32,
    ) -> Vec<Completion> {
        let (prompt_tokens, total) = self
            .usage
            .map_or((0, None), |u| (u.prompt_tokens, Some(u.completion_tokens)));
        let single = self.choices.len() == 1;
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for choice in self.choices {
            if choice.index >= count || seen.contains(&choice.index) {
                continue;
            }
            seen.push(choice.index);
            let index = first + choice.index;
            let text = choice
                .text
                .or(choice.message.and_then(|m| m.content))
                .unwrap_or_default();
            out.push(Completion {
                request: request_index,
                index,
                seed: request.seed_of(index),
                text,
                finish_reason: match choice.finish_reason.as_deref() {
                    Some("length") => FinishReason::Length,
                    _ => FinishReason::Stop,
                },
                prompt_tokens,
                completion_tokens: if single { total } else { None },
            });
        }
        out
    }
}
