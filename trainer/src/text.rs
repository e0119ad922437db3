//! Turning training data into token ids: with a GGUF's tokenizer and chat template exactly as
//! the embedded engine does (llama.cpp), or with a Hugging Face folder's own `tokenizer.json`
//! and jinja chat template, as transformers and vLLM do, for models that are served from a
//! folder. Both give a prompt's ids (template applied, generation prompt added) and a
//! response's ids followed by what closes the assistant turn.

use std::path::Path;

use anyhow::{Context, Result, bail};
use backends::Prompt;
use backends::llamacpp::Tokenizer as GgufTokenizer;
use serde_json::Value;

use crate::chat_template::ChatTemplate;

/// Text that cannot occur in a chat message; marks where the assistant turn's content sits
/// in a rendered template.
const SENTINEL: &str = "\u{1}\u{2}CONTENT\u{2}\u{1}";

/// A tokenizer for training data.
pub enum TextTokenizer {
    Gguf(GgufTokenizer),
    Hf(Box<HfTokenizer>),
}

impl TextTokenizer {
    /// A GGUF file's tokenizer, or a Hugging Face folder's (`tokenizer.json`).
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Ok(TextTokenizer::Hf(Box::new(HfTokenizer::load(path)?)))
        } else {
            Ok(TextTokenizer::Gguf(GgufTokenizer::load(path)?))
        }
    }

    pub fn prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        match self {
            TextTokenizer::Gguf(t) => Ok(t.prompt(prompt)?),
            TextTokenizer::Hf(t) => t.prompt(prompt),
        }
    }

    pub fn response(&self, prompt: &Prompt, text: &str) -> Result<Vec<u32>> {
        match self {
            TextTokenizer::Gguf(t) => Ok(t.response(prompt, text)?),
            TextTokenizer::Hf(t) => t.response(prompt, text),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            TextTokenizer::Gguf(t) => t.vocab_size(),
            TextTokenizer::Hf(t) => t.tokenizer.get_vocab_size(true),
        }
    }
}

/// A Hugging Face folder's tokenizer and chat template.
pub struct HfTokenizer {
    tokenizer: tokenizers::Tokenizer,
    /// The same, reading special-token text as plain text: model output is never parsed for
    /// special tokens (llama.cpp's `parse_special = false`).
    literal: tokenizers::Tokenizer,
    /// The jinja chat template (None: the folder has none; chat prompts are refused).
    template: Option<ChatTemplate>,
    /// The special tokens tokenizer_config.json names (what the template sees).
    special: Vec<(&'static str, String)>,
}

impl HfTokenizer {
    /// Reads `tokenizer.json`, and `tokenizer_config.json` / `chat_template.jinja` (the
    /// template's two homes: before and since transformers 4.43).
    pub fn load(folder: &Path) -> Result<Self> {
        let file = folder.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let config_file = folder.join("tokenizer_config.json");
        let config: Value = match std::fs::read_to_string(&config_file) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", config_file.display()))?,
            Err(_) => Value::Null,
        };
        let jinja = folder.join("chat_template.jinja");
        let template = match std::fs::read_to_string(&jinja) {
            Ok(text) => Some(text),
            Err(_) => config["chat_template"].as_str().map(str::to_string),
        };
        let template = template
            .map(ChatTemplate::new)
            .transpose()
            .with_context(|| format!("{}", folder.display()))?;
        let token = |key: &str| -> Option<String> {
            match &config[key] {
                Value::String(s) => Some(s.clone()),
                // The older form: an AddedToken object.
                Value::Object(o) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string),
                _ => None,
            }
        };
        let special = ["bos_token", "eos_token", "unk_token", "pad_token"]
            .into_iter()
            .filter_map(|key| Some((key, token(key)?)))
            .collect();
        let mut literal = tokenizer.clone();
        literal.set_encode_special_tokens(true);
        Ok(HfTokenizer {
            tokenizer,
            literal,
            template,
            special,
        })
    }

    /// The chat template applied to `messages` (and an assistant turn holding `assistant`),
    /// with the generation prompt when there is no assistant turn.
    fn render(
        &self,
        messages: &[backends::ChatMessage],
        assistant: Option<&str>,
    ) -> Result<String> {
        self.apply_chat_template(messages, assistant, assistant.is_none())
    }

    /// What transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` returns, with an assistant turn appended when given.
    pub fn apply_chat_template(
        &self,
        messages: &[backends::ChatMessage],
        assistant: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let Some(template) = &self.template else {
            bail!(
                "the tokenizer has no chat template (tokenizer_config.json, chat_template.jinja)"
            );
        };
        template.render(messages, assistant, add_generation_prompt, &self.special)
    }

    /// `text`'s ids, with the tokenizer's post-processor (its BOS, if it adds one) when
    /// `special`.
    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        token_ids(&self.tokenizer, text, special)
    }

    /// A prompt's ids as the server tokenizes it. Chat: the rendered template without
    /// special tokens added (transformers' `apply_chat_template` and vLLM's chat endpoint;
    /// a template that wants BOS writes `bos_token`). Raw text: with the tokenizer's
    /// post-processor, as transformers' `tokenizer(text)` and vLLM's `/v1/completions`
    /// (`add_special_tokens` defaults to true there), so BOS comes first when the
    /// tokenizer adds one.
    pub fn prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        match prompt {
            Prompt::Text(text) => self.encode(text, true),
            Prompt::Chat(messages) => self.encode(&self.render(messages, None)?, false),
        }
    }

    /// A response's ids followed by the template's text after an assistant turn (chat), or
    /// EOS (raw text).
    pub fn response(&self, prompt: &Prompt, text: &str) -> Result<Vec<u32>> {
        let mut ids = token_ids(&self.literal, text, false)?;
        match prompt {
            Prompt::Chat(messages) => {
                let rendered = self.render(messages, Some(SENTINEL))?;
                let Some((_, closing)) = rendered.rsplit_once(SENTINEL) else {
                    bail!("the chat template dropped the assistant turn");
                };
                ids.extend(self.encode(closing, false)?);
            }
            Prompt::Text(_) => {
                let eos = self
                    .special
                    .iter()
                    .find(|(key, _)| *key == "eos_token")
                    .and_then(|(_, token)| self.tokenizer.token_to_id(token))
                    .context("the tokenizer has no EOS token")?;
                ids.push(eos);
            }
        }
        Ok(ids)
    }
}

/// `text`'s ids under `tokenizer`, its post-processor applied when `special`.
fn token_ids(tokenizer: &tokenizers::Tokenizer, text: &str, special: bool) -> Result<Vec<u32>> {
    let encoding = tokenizer
        .encode(text, special)
        .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
    Ok(encoding.get_ids().to_vec())
}
