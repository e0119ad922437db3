//! Inference backends: one [`Backend`] trait that turns a batch of prompts plus sampling
//! settings into completions, and its engines: embedded llama.cpp ([`LlamaCpp`]) and any
//! OpenAI-compatible server such as vLLM or llama-server ([`OpenAi`]).
//!
//! A request asks for samples by index: sample j of a request is seeded `seed + j` (vLLM's
//! convention for `n` with `seed`), so a sample has the same identity whether it was made
//! alone or in a batch, and a resumed run asks only for the missing indices.
//!
//! Backends never grade: they know nothing of tasks, answers or rewards.

mod error;
pub mod llamacpp;
pub mod models;
pub mod openai;
mod request;

pub use error::{BackendError, Result};
pub use llamacpp::{DecodeProfile, FlashAttention, LlamaCpp, LlamaCppConfig, Parallel};
pub use openai::{OpenAi, OpenAiConfig};
pub use request::{ChatMessage, Completion, FinishReason, Prompt, Request, Sampling};

use std::path::Path;

/// An inference engine.
pub trait Backend {
    /// `llamacpp` or `openai`: the name written into every sample line.
    fn name(&self) -> &'static str;

    /// The model identity written into every sample line: the GGUF file's sha256 (short
    /// form) for the embedded engine, the served model id for a server.
    fn model_id(&self) -> String;

    /// Generates every sample of every request, keeping the engine busy with many at once.
    /// `on_completion` is called as each sample finishes (in no particular order), so the
    /// caller can write it down before the next one arrives.
    fn generate(
        &mut self,
        requests: &[Request],
        on_completion: &mut dyn FnMut(Completion) -> Result<()>,
    ) -> Result<()>;

    /// Points the backend at a new checkpoint between rounds (a GGUF file for llama.cpp; a
    /// served model or adapter name for a server). An adapter set before is dropped.
    fn load_checkpoint(&mut self, checkpoint: &Path) -> Result<()>;

    /// Samples with a LoRA adapter over the loaded model from now on, or with none: for
    /// llama.cpp a LoRA GGUF (the format of its `convert_lora_to_gguf.py`, which
    /// `llama-server --lora` takes), loaded in megabytes where a checkpoint is the whole
    /// model. A server switches adapters by served name instead, so by default an adapter
    /// file is refused.
    fn set_adapter(&mut self, adapter: Option<&Path>) -> Result<()> {
        match adapter {
            None => Ok(()),
            Some(path) => Err(BackendError::Unsupported(format!(
                "{}: the {} backend cannot apply a LoRA adapter file",
                path.display(),
                self.name()
            ))),
        }
    }
}
