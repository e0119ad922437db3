//! The embedded llama.cpp engine (`llama-cpp-2`): loads a GGUF, applies its chat template,
//! and decodes many sequences per batch with continuous batching (see [`scheduler`]).

mod adapter;
mod ballast;
mod sampler;
mod scheduler;
mod tokens;

pub use scheduler::DecodeProfile;
pub use tokens::{Tokenizer, position_logits};

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use sha2::{Digest, Sha256};

use crate::Backend;
use crate::error::{BackendError, Result};
use crate::request::{Completion, Prompt, Request};

/// Settings of the embedded engine.
#[derive(Debug, Clone)]
pub struct LlamaCppConfig {
    /// The GGUF file.
    pub model: PathBuf,
    /// CPU threads (default: all cores).
    pub threads: Option<u32>,
    /// Sequences decoded together (slots).
    pub parallel: Parallel,
    /// Context length available to each sequence (prompt + completion).
    pub context_per_sequence: u32,
    /// Tokens per `llama_decode` call (prompt chunks and one token per running sequence).
    pub batch_size: u32,
    /// Tokens per compute micro-batch inside llama.cpp.
    pub ubatch_size: u32,
    /// Layers offloaded to the GPU (only with the `cuda` feature).
    pub gpu_layers: u32,
    /// Whether attention runs as llama.cpp's fused flash-attention kernel.
    pub flash_attention: FlashAttention,
}

/// How many sequences decode together.
///
/// [`Parallel::Auto`] gives each `generate` call one slot per sample it asks for, up to
/// llama.cpp's 256 sequences and up to what a [`AUTO_CACHE_BYTES`] KV cache holds at the
/// call's cells per sequence. Measured on the loop's workload (arith, 16 problems, greedy + 8
/// samples, 64 tokens, 2 cores): llama.cpp's throughput flattens past 64 sequences
/// (llama-batched-bench: 180, 197, 193, 195 tok/s at 32, 64, 128, 144), while fewer slots than
/// samples leave slots idle as the last wave of equal-length responses finishes (this engine,
/// back to back: 158 tok/s at 64 slots, 169 at 144). Output does not depend on it: greedy
/// responses are batch-invariant and each sample draws from its own seeded generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parallel {
    #[default]
    Auto,
    Fixed(u32),
}

/// KV cache memory [`Parallel::Auto`] stays within.
pub const AUTO_CACHE_BYTES: u64 = 2 << 30;

/// llama.cpp's limit on sequences in one context (`LLAMA_MAX_SEQ`).
const MAX_SEQUENCES: u64 = 256;

impl std::str::FromStr for Parallel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Parallel::Auto);
        }
        match s.parse::<u32>() {
            Ok(n) if (1..=MAX_SEQUENCES as u32).contains(&n) => Ok(Parallel::Fixed(n)),
            _ => Err(format!(
                "`{s}`: expected `auto` or a number of sequences from 1 to {MAX_SEQUENCES}"
            )),
        }
    }
}

impl std::fmt::Display for Parallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parallel::Auto => f.write_str("auto"),
            Parallel::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// llama.cpp's attention implementation.
///
/// Both are batch-invariant here: a sequence's greedy output is the same alone and in a full
/// batch. Plain attention is (its products are per row). llama.cpp's CPU flash-attention
/// kernel picks one of three algorithms from the shape of each micro-batch, which sum in
/// different orders (a prompt decoded alone and among others parted on 3 of 10 gsm8k prompts
/// after 570-650 characters, measured before this was handled); under flash attention the
/// scheduler keeps every micro-batch on the kernel's plain loop (see `ballast`), and the
/// tests `greedy_is_the_same_alone_and_in_a_full_batch*` check both settings. Flash
/// attention skips the cells a sequence does not hold, which plain attention computes
/// (llama.cpp pads the attended cells to 256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    /// Plain attention (matrix products and softmax).
    Off,
    /// Flash attention, kept on the CPU kernel's batch-invariant path (the GPU kernels are
    /// not checked for it).
    #[default]
    On,
    /// llama.cpp decides (flash attention wherever the device supports it); handled as `On`.
    Auto,
}

impl FlashAttention {
    /// llama.cpp's name for the setting (as in `llama-server --flash-attn`).
    pub fn as_str(self) -> &'static str {
        match self {
            FlashAttention::Off => "off",
            FlashAttention::On => "on",
            FlashAttention::Auto => "auto",
        }
    }

    fn policy(self) -> llama_cpp_sys_2::llama_flash_attn_type {
        match self {
            FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
            FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        }
    }
}

/// The context one `generate` call runs in: what [`LlamaCppConfig`] leaves to the call
/// (`Parallel::Auto`, cells per sequence) settled by its requests.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallSize {
    /// Sequences decoding together.
    pub slots: u32,
    /// KV cells of each sequence.
    pub cells_per_sequence: u32,
    /// Tokens one `llama_decode` takes (at least one per slot, and a throw-away one beside
    /// lone sequences under flash attention).
    pub batch_size: u32,
    /// Whether flash attention may run (on or auto): the scheduler then keeps each
    /// micro-batch on the kernel's batch-invariant path, and the context holds one KV stream
    /// more than the slots (see `ballast`).
    pub flash_attention: bool,
}

impl CallSize {
    /// KV streams (sequence ids) of the context: the slots, and one for the throw-away tokens
    /// of the last slot under flash attention.
    fn streams(self) -> u32 {
        self.slots + u32::from(self.flash_attention)
    }
}

impl LlamaCppConfig {
    /// Defaults for a model file.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        LlamaCppConfig {
            model: model.into(),
            threads: None,
            parallel: Parallel::Auto,
            context_per_sequence: 2048,
            batch_size: 512,
            ubatch_size: 512,
            gpu_layers: 0,
            flash_attention: FlashAttention::On,
        }
    }
}

/// llama.cpp's global state, initialised once per process.
fn llama_backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp's own logging goes through `tracing` (RUST_LOG=llama_cpp_2=info).
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            if built_with_sgemm() {
                tracing::warn!(
                    "ggml was built with llamafile's sgemm: samples will depend on which other \
                     sequences share a step, and a resumed run may not end as an uninterrupted \
                     one (rebuild it with GGML_LLAMAFILE=OFF, as .cargo/config.toml asks: \
                     cargo clean -p llama-cpp-sys-2)"
                );
            }
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BackendError::Engine(e.clone()))
}

/// Whether ggml multiplies with llamafile's sgemm, whose sums differ from the one-row dot
/// product's (see `scheduler`'s batch invariance). `.cargo/config.toml` turns it off, but
/// cargo does not rebuild llama-cpp-sys-2 when that setting is new to an existing target
/// directory, so the build is checked, not assumed.
fn built_with_sgemm() -> bool {
    // SAFETY: reads a compile-time constant of the linked ggml; no arguments, no state.
    unsafe { llama_cpp_sys_2::ggml_cpu_has_llamafile() != 0 }
}

/// The embedded llama.cpp backend.
pub struct LlamaCpp {
    config: LlamaCppConfig,
    model: LlamaModel,
    digest: String,
    /// The LoRA adapter applied over `model` ([`Backend::set_adapter`]).
    adapter: Option<Adapter>,
    profile: Option<DecodeProfile>,
}

/// A LoRA adapter loaded over the model: its file and the file's sha256 name it in samples.
struct Adapter {
    lora: LlamaLoraAdapter,
    path: PathBuf,
    digest: String,
}

impl LlamaCpp {
    /// Loads the model.
    pub fn new(config: LlamaCppConfig) -> Result<Self> {
        let (model, digest) = load(&config)?;
        Ok(LlamaCpp {
            config,
            model,
            digest,
            adapter: None,
            profile: None,
        })
    }

    /// Where the work of the last `generate` call went.
    pub fn last_profile(&self) -> Option<&DecodeProfile> {
        self.profile.as_ref()
    }

    /// The settings in force.
    pub fn config(&self) -> &LlamaCppConfig {
        &self.config
    }

    /// The prompt's tokens, chat template applied, exactly as they are decoded.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>> {
        tokens::prompt_tokens(&self.model, prompt)
    }

    /// The size of one `generate` call's context: each sequence gets the cells its longest
    /// prompt plus `max_tokens` needs (rounded up to llama.cpp's 256-cell padding, at most
    /// `context_per_sequence`), and `Parallel::Auto` becomes a number of slots. A
    /// short-answer workload then allocates and clears a fraction of the cache, and copying a
    /// prompt into another sequence (a whole-stream copy in llama.cpp) moves 256 cells
    /// instead of 2048. Output does not change: attention covers the used cells rounded up to
    /// 256 either way.
    fn sized_for(&self, requests: &[Request], prompts: &[Vec<LlamaToken>]) -> CallSize {
        let needed = requests
            .iter()
            .zip(prompts)
            .map(|(r, p)| p.len() as u64 + u64::from(r.sampling.max_tokens) + 1)
            .max()
            .unwrap_or(0);
        let padded = needed.div_ceil(256) * 256;
        let cells = padded.clamp(256, u64::from(self.config.context_per_sequence)) as u32;
        let flash_attention = self.config.flash_attention != FlashAttention::Off;
        // The extra stream of flash attention counts against llama.cpp's limit.
        let most = MAX_SEQUENCES - u64::from(flash_attention);
        let slots = match self.config.parallel {
            Parallel::Fixed(n) => u64::from(n).clamp(1, most) as u32,
            Parallel::Auto => {
                let samples: u64 = requests.iter().map(|r| r.indices.len() as u64).sum();
                let fit = AUTO_CACHE_BYTES / (u64::from(cells) * self.cache_bytes_per_cell());
                samples.min(fit).clamp(1, most) as u32
            }
        };
        let streams = slots + u32::from(flash_attention);
        CallSize {
            slots,
            cells_per_sequence: cells,
            batch_size: self.config.batch_size.max(streams),
            flash_attention,
        }
    }

    /// Bytes of one KV cell (f16 keys and values of every layer).
    fn cache_bytes_per_cell(&self) -> u64 {
        let m = &self.model;
        let head_dim = (m.n_embd() as u64 / u64::from(m.n_head().max(1))).max(1);
        u64::from(m.n_layer()) * 2 * u64::from(m.n_head_kv()) * head_dim * 2
    }

    fn context_params(config: &LlamaCppConfig, size: CallSize) -> LlamaContextParams {
        let threads = config.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get() as i32),
            |t| t as i32,
        );
        // Under flash attention a running step must not be cut into micro-batches by size
        // (a cut could leave a sequence alone): one micro-batch holds the whole step.
        let ubatch = if size.flash_attention {
            config.ubatch_size.max(size.streams())
        } else {
            config.ubatch_size
        };
        LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(size.streams() * size.cells_per_sequence))
            .with_n_batch(size.batch_size)
            .with_n_ubatch(ubatch.min(size.batch_size))
            .with_n_seq_max(size.streams())
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            // One KV stream per sequence: a sequence's attention then sees only its own
            // cells, laid out as when it runs alone, so greedy output does not depend on
            // what else is in the batch. (A unified cache interleaves sequences, and the
            // changed summation order flipped near-tied arg-maxes in our tests.)
            .with_kv_unified(false)
            .with_flash_attention_policy(config.flash_attention.policy())
    }
}

fn load(config: &LlamaCppConfig) -> Result<(LlamaModel, String)> {
    let model_error = |message: String| BackendError::Model {
        path: config.model.clone(),
        message,
    };
    let digest = file_digest(&config.model).map_err(|e| model_error(e.to_string()))?;
    let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
    let model = LlamaModel::load_from_file(llama_backend()?, &config.model, &params)
        .map_err(|e| model_error(e.to_string()))?;
    Ok((model, digest))
}

impl Backend for LlamaCpp {
    fn name(&self) -> &'static str {
        "llamacpp"
    }

    fn model_id(&self) -> String {
        let name = |path: &Path, digest: &str| {
            let file = path
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            format!("{file}@sha256:{}", &digest[..16])
        };
        let model = name(&self.config.model, &self.digest);
        match &self.adapter {
            Some(a) => format!("{model}+{}", name(&a.path, &a.digest)),
            None => model,
        }
    }

    fn generate(
        &mut self,
        requests: &[Request],
        on_completion: &mut dyn FnMut(Completion) -> Result<()>,
    ) -> Result<()> {
        let _span = tracing::info_span!("llamacpp.generate", requests = requests.len()).entered();
        let prompts = requests
            .iter()
            .map(|r| self.prompt_tokens(&r.prompt))
            .collect::<Result<Vec<_>>>()?;
        let size = self.sized_for(requests, &prompts);
        let mut context = self
            .model
            .new_context(llama_backend()?, Self::context_params(&self.config, size))
            .map_err(|e| BackendError::Engine(format!("context: {e}")))?;
        if let Some(adapter) = &mut self.adapter {
            context
                .lora_adapter_set(&mut adapter.lora, 1.0)
                .map_err(|e| BackendError::Engine(format!("applying the LoRA adapter: {e}")))?;
        }
        let profile = scheduler::run(
            &self.model,
            &mut context,
            size,
            requests,
            &prompts,
            on_completion,
        )?;
        self.profile = Some(profile);
        Ok(())
    }

    fn load_checkpoint(&mut self, checkpoint: &Path) -> Result<()> {
        let config = LlamaCppConfig {
            model: checkpoint.to_path_buf(),
            ..self.config.clone()
        };
        let (model, digest) = load(&config)?;
        // An adapter belongs to the model it was loaded over.
        self.adapter = None;
        self.model = model;
        self.digest = digest;
        self.config = config;
        Ok(())
    }

    fn set_adapter(&mut self, adapter: Option<&Path>) -> Result<()> {
        let Some(path) = adapter else {
            self.adapter = None;
            return Ok(());
        };
        let digest = file_digest(path).map_err(|e| BackendError::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // llama.cpp keeps every adapter loaded over a model until the model is freed (a few
        // megabytes a round).
        let lora = adapter::load(&mut self.model, path)?;
        self.adapter = Some(Adapter {
            lora,
            path: path.to_path_buf(),
            digest,
        });
        Ok(())
    }
}

/// A file's sha256, hex, streamed (a 7B GGUF need not sit in memory twice to be hashed).
fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ggml_is_built_without_llamafile_sgemm() {
        assert!(
            !super::built_with_sgemm(),
            "llama-cpp-sys-2 was built before GGML_LLAMAFILE=OFF: cargo clean -p llama-cpp-sys-2"
        );
    }
}
