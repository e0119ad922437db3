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
    template: Option<String>,
    bos_token: String,
    eos_token: String,
    /// Whether a prompt starts with BOS (`add_bos_token` of tokenizer_config.json).
    add_bos: bool,
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
        let token = |key: &str| -> String {
            match &config[key] {
                Value::String(s) => s.clone(),
                // The older form: an AddedToken object.
                Value::Object(o) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            }
        };
        let mut literal = tokenizer.clone();
        literal.set_encode_special_tokens(true);
        Ok(HfTokenizer {
            tokenizer,
            literal,
            template,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            add_bos: config["add_bos_token"].as_bool().unwrap_or(false),
        })
    }

    /// The chat template applied to `messages` (and an assistant turn holding `assistant`).
    fn render(
        &self,
        messages: &[backends::ChatMessage],
        assistant: Option<&str>,
    ) -> Result<String> {
        let Some(source) = &self.template else {
            bail!(
                "the tokenizer has no chat template (tokenizer_config.json, chat_template.jinja)"
            );
        };
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_template("chat", source).context("chat template")?;
        let mut all: Vec<Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
            .collect();
        if let Some(content) = assistant {
            all.push(serde_json::json!({"role": "assistant", "content": content}));
        }
        let context = minijinja::context! {
            messages => all,
            add_generation_prompt => assistant.is_none(),
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        };
        env.get_template("chat")?
            .render(context)
            .context("rendering the chat template")
    }

    fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        self.encode_with(&self.tokenizer, text, bos)
    }

    fn encode_with(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        text: &str,
        bos: bool,
    ) -> Result<Vec<u32>> {
        let encoding = tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if bos && let Some(id) = self.tokenizer.token_to_id(&self.bos_token) {
            ids.push(id);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// A prompt's ids: the chat template with the generation prompt, or the raw text; BOS
    /// first when the tokenizer adds one and the text does not start with it.
    pub fn prompt(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let text = match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => self.render(messages, None)?,
        };
        let bos = self.add_bos && !(self.bos_token.is_empty() || text.starts_with(&self.bos_token));
        self.encode(&text, bos)
    }

    /// A response's ids followed by the template's text after an assistant turn (chat), or
    /// EOS (raw text).
    pub fn response(&self, prompt: &Prompt, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode_with(&self.literal, text, false)?;
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
                    .tokenizer
                    .token_to_id(&self.eos_token)
                    .context("the tokenizer has no EOS token")?;
                ids.push(eos);
            }
        }
        Ok(ids)
    }
}
