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
        // Streamed, so that a hung request shows as silence (see `idle_timeout`); the
        // final chunk carries the usage.
        "stream": true,
        "stream_options": {"include_usage": true},
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

/// Collects a streamed reply (server-sent events) into the JSON of a non-streamed one:
/// each choice's text pieces (`text` for completions, `delta.content` for chat) joined,
/// its finish reason, and the last usage seen.
#[derive(Debug, Default)]
pub(super) struct StreamedReply {
    pending: Vec<u8>,
    texts: std::collections::BTreeMap<u64, (String, Option<String>)>,
    usage: Option<Value>,
    done: bool,
}

impl StreamedReply {
    /// Feeds bytes as they arrive; complete `data:` lines are parsed.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue; // blank separators, comments, `event:` lines
            };
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let event: Value =
                serde_json::from_str(data).map_err(|e| format!("malformed event: {e}"))?;
            self.event(&event);
        }
        Ok(())
    }

    fn event(&mut self, event: &Value) {
        if let Some(usage) = event.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        for choice in event["choices"].as_array().into_iter().flatten() {
            let index = choice["index"].as_u64().unwrap_or(0);
            let entry = self.texts.entry(index).or_default();
            let piece = choice["text"]
                .as_str()
                .or(choice["delta"]["content"].as_str());
            entry.0.push_str(piece.unwrap_or_default());
            if let Some(reason) = choice["finish_reason"].as_str() {
                entry.1 = Some(reason.to_string());
            }
        }
    }

    /// The whole reply, once the stream said `[DONE]` or every choice has finished; an
    /// error for a stream cut short.
    pub(super) fn finish(self) -> Result<Value, String> {
        let finished = !self.texts.is_empty() && self.texts.values().all(|(_, r)| r.is_some());
        if !self.done && !finished {
            return Err("the stream ended before the reply was complete".into());
        }
        let choices: Vec<Value> = self
            .texts
            .into_iter()
            .map(|(index, (text, reason))| {
                json!({"index": index, "text": text, "finish_reason": reason})
            })
            .collect();
        Ok(json!({"choices": choices, "usage": self.usage}))
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

#[cfg(test)]
mod tests {
    use super::StreamedReply;

    #[test]
    fn events_split_anywhere_are_joined_per_choice() {
        let stream = "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"},\"finish_reason\":null}]}\n\n\
                      data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\"}}]}\n\n\
                      : keep-alive comment\n\n\
                      data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"},{\"index\":1,\"delta\":{\"content\":\"c\"},\"finish_reason\":\"stop\"}]}\r\n\r\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n\
                      data: [DONE]\n\n";
        let mut reply = StreamedReply::default();
        for piece in stream.as_bytes().chunks(7) {
            reply.feed(piece).unwrap();
        }
        let json = reply.finish().unwrap();
        assert_eq!(json["choices"][0]["text"], "a");
        assert_eq!(json["choices"][0]["finish_reason"], "length");
        assert_eq!(json["choices"][1]["text"], "bc");
        assert_eq!(json["usage"]["completion_tokens"], 4);
    }

    #[test]
    fn a_stream_cut_short_is_an_error() {
        let mut reply = StreamedReply::default();
        reply
            .feed(b"data: {\"choices\":[{\"index\":0,\"text\":\"par\"}]}\n\ndata: {\"choi")
            .unwrap();
        assert!(reply.finish().is_err());
        let mut garbled = StreamedReply::default();
        assert!(garbled.feed(b"data: {not json}\n").is_err());
    }
}
