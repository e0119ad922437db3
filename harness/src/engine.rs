//! Building the inference backend from the command line's settings (shared by `bench` and
//! `run`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use backends::{Backend, LlamaCpp, LlamaCppConfig, OpenAi, OpenAiConfig};

use crate::flags::{BackendKind, LlamaCppArgs, OpenAiArgs};

/// The backend these settings select. `model`: a GGUF for llama.cpp (default: the embedded
/// SmolLM2, fetched on first use), the served model id for a server.
pub fn make_backend(
    kind: BackendKind,
    model: Option<&str>,
    llamacpp: &LlamaCppArgs,
    openai: &OpenAiArgs,
) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Llamacpp => {
            let model = match model {
                Some(path) => PathBuf::from(path),
                None => backends::models::ensure(&backends::models::SMOLLM2_135M)?,
            };
            Ok(Box::new(LlamaCpp::new(llamacpp_config(llamacpp, model))?))
        }
        BackendKind::Openai => {
            let model = model.context("--backend openai needs --model (the served model id)")?;
            Ok(Box::new(OpenAi::new(openai_config(openai, model)?)?))
        }
    }
}

/// The OpenAI backend's settings for a served model.
pub fn openai_config(openai: &OpenAiArgs, model: &str) -> Result<OpenAiConfig> {
    if openai.base_url.is_empty() {
        bail!("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)");
    }
    let mut config = OpenAiConfig::new(openai.base_url.clone(), model.to_string());
    if openai.api_key.is_some() {
        config.api_key = openai.api_key.clone();
    }
    config.concurrency = openai.concurrency;
    config.timeout = std::time::Duration::from_secs_f64(openai.request_timeout);
    config.idle_timeout = std::time::Duration::from_secs_f64(openai.idle_timeout);
    config.max_retries = openai.retries;
    config.native_n = openai.native_n;
    Ok(config)
}

fn llamacpp_config(l: &LlamaCppArgs, model: PathBuf) -> LlamaCppConfig {
    LlamaCppConfig {
        threads: l.threads,
        parallel: l.parallel,
        context_per_sequence: l.ctx,
        batch_size: l.batch_size,
        ubatch_size: l.ubatch_size,
        gpu_layers: l.gpu_layers,
        flash_attention: l.flash_attn.into(),
        ..LlamaCppConfig::new(model)
    }
}

pub fn backend_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Llamacpp => "llamacpp",
        BackendKind::Openai => "openai",
    }
}

/// The embedded engine's attention setting (`None` for a server, whose setting is its own):
/// it changes greedy output, so a resumed run must use the same.
pub fn flash_attention(kind: BackendKind, llamacpp: &LlamaCppArgs) -> Option<&'static str> {
    match kind {
        BackendKind::Llamacpp => Some(backends::FlashAttention::from(llamacpp.flash_attn).as_str()),
        BackendKind::Openai => None,
    }
}
