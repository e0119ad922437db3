//! What a backend is asked for and what it answers.

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A prompt: chat messages (the model's chat template is applied) or raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
}

/// Sampling settings. Temperature 0 means greedy decoding; every other field is sent
/// explicitly to servers, whose defaults differ (vLLM's `max_tokens` is 16, llama-server's
/// temperature 0.8).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 0 disables min-p.
    pub min_p: f32,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    /// Keep generating through end-of-generation tokens until `max_tokens` (for throughput
    /// measurements with a fixed length, as llama.cpp's benchmark tools do).
    pub ignore_eos: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            max_tokens: 256,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl Sampling {
    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// A prompt and which of its samples are wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// Base seed: sample j is drawn with seed `seed + j`.
    pub seed: u64,
    /// The sample indices j to produce (for greedy decoding, `[0]`).
    pub indices: Vec<u32>,
}

impl Request {
    /// The seed of sample `index`.
    pub fn seed_of(&self, index: u32) -> u64 {
        self.seed.wrapping_add(u64::from(index))
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// End of generation token or a stop string.
    Stop,
    /// `max_tokens` (or the context) ran out.
    Length,
}

impl FinishReason {
    /// The OpenAI-style name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One finished sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Index of the request in the batch.
    pub request: usize,
    /// The sample index j.
    pub index: u32,
    /// The seed it was drawn with.
    pub seed: u64,
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    /// None when the server reports only a total for several choices.
    pub completion_tokens: Option<u32>,
}
