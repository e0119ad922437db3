//! Tokenisation exactly as the embedded engine does it, for the trainer: the same chat
//! template call, the same BOS and special-token rules, so that training sees the token
//! sequence that produced a sample.

use std::path::Path;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use super::llama_backend;
use crate::error::{BackendError, Result};
use crate::request::Prompt;

/// Text that cannot occur in a chat message; marks where an assistant turn's content sits
/// in a rendered template.
const SENTINEL: &str = "\u{1}\u{2}CONTENT\u{2}\u{1}";

/// The prompt's tokens, chat template applied, as the engine decodes them.
pub(crate) fn prompt_tokens(model: &LlamaModel, prompt: &Prompt) -> Result<Vec<LlamaToken>> {
    let text = match prompt {
        Prompt::Text(text) => text.clone(),
        Prompt::Chat(messages) => render(model, messages, None)?,
    };
    // As llama-server does: BOS if the vocabulary wants one, special tokens parsed.
    Ok(model.vocab().tokenize(text.as_bytes(), true, true))
}

fn render(
    model: &LlamaModel,
    messages: &[crate::ChatMessage],
    assistant: Option<&str>,
) -> Result<String> {
    let template = model
        .chat_template(None)
        .map_err(|e| BackendError::Engine(format!("chat template: {e}")))?;
    let mut chat = messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| BackendError::Engine(format!("chat message: {e}")))?;
    if let Some(content) = assistant {
        chat.push(
            LlamaChatMessage::new("assistant".into(), content.into())
                .map_err(|e| BackendError::Engine(format!("chat message: {e}")))?,
        );
    }
    model
        .apply_chat_template(&template, &chat, assistant.is_none())
        .map_err(|e| BackendError::Engine(format!("chat template: {e}")))
}

/// A GGUF's tokenizer and chat template, loaded without the weights.
pub struct Tokenizer {
    model: LlamaModel,
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(llama_backend()?, path, &params).map_err(|e| {
            BackendError::Model {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        Ok(Tokenizer { model })
    }

    /// Token ids of a prompt as the engine decodes it (template, BOS, special tokens).
    pub fn prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        Ok(to_ids(prompt_tokens(&self.model, prompt)?))
    }

    /// Token ids of a response to `prompt`, followed by what ends the turn: the chat
    /// template's closing text (`<|im_end|>\n` for ChatML) for chat prompts, the
    /// end-of-sequence token for raw text. Model text is never parsed for special tokens.
    pub fn response(&self, prompt: &Prompt, text: &str) -> Result<Vec<u32>> {
        let mut ids = to_ids(self.model.vocab().tokenize(text.as_bytes(), false, false));
        match prompt {
            Prompt::Chat(messages) => {
                let rendered = render(&self.model, messages, Some(SENTINEL))?;
                let closing = rendered
                    .rsplit_once(SENTINEL)
                    .map(|(_, after)| after.to_string())
                    .ok_or_else(|| {
                        BackendError::Engine("chat template dropped the assistant turn".into())
                    })?;
                ids.extend(to_ids(self.model.vocab().tokenize(
                    closing.as_bytes(),
                    false,
                    true,
                )));
            }
            Prompt::Text(_) => ids.push(self.model.vocab().eos().0 as u32),
        }
        Ok(ids)
    }

    /// Size of the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.model.n_vocab() as usize
    }

    /// The text of token ids (for messages and tests).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for id in ids {
            bytes.extend(
                self.model
                    .vocab()
                    .token_to_piece(LlamaToken(*id as i32), true, None),
            );
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn to_ids(tokens: Vec<LlamaToken>) -> Vec<u32> {
    tokens.into_iter().map(|t| t.0 as u32).collect()
}

/// Next-token logits at every position of `tokens`, as llama.cpp computes them for the GGUF
/// at `path` with the LoRA adapter GGUF `adapter` applied, if any (CPU). Used to check the
/// trainer's model against the engine.
pub fn position_logits(
    path: &Path,
    adapter: Option<&Path>,
    tokens: &[u32],
    threads: i32,
) -> Result<Vec<Vec<f32>>> {
    let mut model =
        LlamaModel::load_from_file(llama_backend()?, path, &LlamaModelParams::default()).map_err(
            |e| BackendError::Model {
                path: path.to_path_buf(),
                message: e.to_string(),
            },
        )?;
    let mut lora = match adapter {
        Some(adapter) => Some(super::adapter::load(&mut model, adapter)?),
        None => None,
    };
    let n = tokens.len() as u32;
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(n.max(64)))
        .with_n_batch(n.max(64))
        .with_n_ubatch(n.max(64))
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut context = model
        .new_context(llama_backend()?, params)
        .map_err(|e| BackendError::Engine(format!("context: {e}")))?;
    if let Some(lora) = &mut lora {
        context
            .lora_adapter_set(lora, 1.0)
            .map_err(|e| BackendError::Engine(format!("applying the LoRA adapter: {e}")))?;
    }
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    let ids: Vec<LlamaToken> = tokens.iter().map(|t| LlamaToken(*t as i32)).collect();
    batch
        .add_sequence(&ids, 0, true)
        .map_err(|e| BackendError::Engine(format!("batch: {e}")))?;
    context
        .decode(&mut batch)
        .map_err(|e| BackendError::Engine(format!("decode: {e}")))?;
    Ok((0..tokens.len())
        .map(|i| context.get_logits_ith(i as i32).to_vec())
        .collect())
}
