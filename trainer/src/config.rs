//! The shape of a Llama-family decoder, read from GGUF metadata or a Hugging Face
//! `config.json`.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file::Value;
use serde::{Deserialize, Serialize};

/// Where the rotary embedding rotates pairs: llama.cpp's `llama` architecture stores q/k rows
/// interleaved (pairs `2i, 2i+1`), Hugging Face checkpoints and GGUF `qwen2` store them in
/// halves (`i, i + d/2`). The model always computes in the halves layout; this only says how
/// to convert q/k rows when reading or writing a GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GgufRope {
    /// q/k rows permuted to the interleaved layout (`llama`, `mistral`).
    Interleaved,
    /// q/k rows as in Hugging Face checkpoints (`qwen2`).
    Halves,
}

/// Hyper-parameters of a Llama-family decoder (SmolLM2, Llama 2/3, Mistral, Qwen2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the relations the model relies on.
    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            bail!(
                "hidden size {} is not a multiple of the head count {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            bail!(
                "head count {} is not a multiple of the key/value head count {}",
                self.num_attention_heads,
                self.num_key_value_heads
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!("head dimension {} is odd", self.head_dim());
        }
        Ok(())
    }

    /// Reads the `<arch>.*` keys of a GGUF. `vocab_size` and tying come from the tensors,
    /// which the caller knows.
    pub fn from_gguf(
        metadata: &HashMap<String, Value>,
        vocab_size: usize,
        tie_word_embeddings: bool,
        attention_bias: bool,
    ) -> Result<(Self, GgufRope)> {
        let arch = metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .context("GGUF has no general.architecture")?
            .clone();
        let rope = match arch.as_str() {
            "llama" | "mistral" => GgufRope::Interleaved,
            "qwen2" => GgufRope::Halves,
            other => bail!(
                "GGUF architecture `{other}` is not a Llama-family decoder this trainer supports (llama, mistral, qwen2)"
            ),
        };
        let int = |key: &str| -> Result<usize> {
            let full = format!("{arch}.{key}");
            let value = metadata
                .get(&full)
                .with_context(|| format!("GGUF metadata lacks {full}"))?;
            Ok(value
                .to_u64()
                .or_else(|_| value.to_u32().map(u64::from))
                .or_else(|_| value.to_i32().map(|v| v as u64))
                .with_context(|| format!("GGUF metadata {full} is not an integer"))?
                as usize)
        };
        let float = |key: &str, default: f64| -> f64 {
            metadata
                .get(&format!("{arch}.{key}"))
                .and_then(|v| v.to_f32().ok())
                .map_or(default, f64::from)
        };
        let heads = int("attention.head_count")?;
        let config = LlamaConfig {
            hidden_size: int("embedding_length")?,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: int("attention.head_count_kv").unwrap_or(heads),
            vocab_size,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta: float("rope.freq_base", 10_000.0),
            max_position_embeddings: int("context_length").unwrap_or(2048),
            tie_word_embeddings,
            attention_bias,
        };
        config.validate()?;
        Ok((config, rope))
    }

    /// Reads a Hugging Face `config.json` (LlamaForCausalLM, MistralForCausalLM,
    /// Qwen2ForCausalLM).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Hf {
            hidden_size: usize,
            intermediate_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            num_key_value_heads: Option<usize>,
            vocab_size: usize,
            rms_norm_eps: f64,
            rope_theta: Option<f64>,
            max_position_embeddings: Option<usize>,
            tie_word_embeddings: Option<bool>,
            attention_bias: Option<bool>,
            model_type: Option<String>,
        }
        let hf: Hf = serde_json::from_str(text).context("config.json")?;
        let qwen = hf.model_type.as_deref() == Some("qwen2");
        let config = LlamaConfig {
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            vocab_size: hf.vocab_size,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            attention_bias: hf.attention_bias.unwrap_or(qwen),
        };
        config.validate()?;
        Ok(config)
    }

    /// A Hugging Face `config.json` for the merged export.
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        })
    }
}
