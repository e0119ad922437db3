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
    /// How the rotary frequencies are stretched for long contexts (Llama 3.1 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
}

/// A change to the rotary embedding's frequencies `theta^(-2i/d)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (Hugging Face `"linear"`).
    Linear { factor: f64 },
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth blend between
    /// (Hugging Face `"llama3"`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// One divisor per frequency: how llama.cpp stores Llama 3.1's scaling in a GGUF (the
    /// `rope_freqs.weight` tensor).
    Divisors { divisors: Vec<f64> },
}

impl RopeScaling {
    /// Applies the scaling to the unscaled frequencies.
    pub fn apply(&self, inv_freq: &mut [f64]) -> Result<()> {
        match self {
            RopeScaling::Linear { factor } => inv_freq.iter_mut().for_each(|f| *f /= factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let context = *original_max_position_embeddings as f64;
                let (low_wavelen, high_wavelen) =
                    (context / low_freq_factor, context / high_freq_factor);
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (context / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
            RopeScaling::Divisors { divisors } => {
                if divisors.len() != inv_freq.len() {
                    bail!(
                        "rope_freqs has {} divisors for {} rotary frequencies",
                        divisors.len(),
                        inv_freq.len()
                    );
                }
                inv_freq.iter_mut().zip(divisors).for_each(|(f, d)| *f /= d);
            }
        }
        Ok(())
    }

    /// Reads a Hugging Face `rope_scaling` object (`null` or absent: none).
    fn from_hf(value: &serde_json::Value) -> Result<Option<Self>> {
        if value.is_null() {
            return Ok(None);
        }
        let kind = value
            .get("rope_type")
            .or_else(|| value.get("type"))
            .and_then(|v| v.as_str())
            .context("rope_scaling has no rope_type")?;
        let number = |key: &str| -> Result<f64> {
            value
                .get(key)
                .and_then(|v| v.as_f64())
                .with_context(|| format!("rope_scaling ({kind}) lacks the number {key}"))
        };
        Ok(Some(match kind {
            "default" => return Ok(None),
            "linear" => RopeScaling::Linear {
                factor: number("factor")?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_position_embeddings: number("original_max_position_embeddings")?
                    as usize,
            },
            other => bail!(
                "rope_scaling type `{other}` is not supported (linear and llama3 are): the \
                 model's positions would be wrong"
            ),
        }))
    }
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
            rope_scaling: match metadata
                .get(&format!("{arch}.rope.scaling.type"))
                .and_then(|v| v.to_string().ok())
                .map(String::as_str)
            {
                None | Some("none") => None,
                Some("linear") => Some(RopeScaling::Linear {
                    factor: float("rope.scaling.factor", 1.0),
                }),
                Some(other) => bail!("GGUF rope scaling `{other}` is not supported (linear is)"),
            },
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
            #[serde(default)]
            rope_scaling: serde_json::Value,
            /// transformers 5 writes rope_theta and the scaling here instead.
            #[serde(default)]
            rope_parameters: serde_json::Value,
        }
        let hf: Hf = serde_json::from_str(text).context("config.json")?;
        let rope_theta = hf.rope_theta.or_else(|| {
            hf.rope_parameters
                .get("rope_theta")
                .and_then(|v| v.as_f64())
        });
        let rope_scaling = match hf.rope_scaling.is_null() {
            true => &hf.rope_parameters,
            false => &hf.rope_scaling,
        };
        let qwen = hf.model_type.as_deref() == Some("qwen2");
        let config = LlamaConfig {
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            vocab_size: hf.vocab_size,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            attention_bias: hf.attention_bias.unwrap_or(qwen),
            rope_scaling: RopeScaling::from_hf(rope_scaling)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// A Hugging Face `config.json` for the merged export.
    pub fn to_hf_json(&self) -> Result<serde_json::Value> {
        let rope_scaling = match &self.rope_scaling {
            None => serde_json::Value::Null,
            Some(RopeScaling::Divisors { .. }) => bail!(
                "the model's rotary scaling came as llama.cpp's per-frequency divisors, which a \
                 Hugging Face config.json cannot state: export it as GGUF"
            ),
            Some(scaling) => serde_json::to_value(scaling)?,
        };
        Ok(serde_json::json!({
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
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Llama 3.2 1B's `config.json` fields that matter here.
    const LLAMA_3_2: &str = r#"{
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 131072,
        "tie_word_embeddings": true, "model_type": "llama",
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"}
    }"#;

    #[test]
    fn llama3_scaling_matches_transformers() -> Result<()> {
        let config = LlamaConfig::from_hf_json(LLAMA_3_2)?;
        let scaling = config.rope_scaling.clone().expect("rope_scaling read");
        let d = config.head_dim();
        let mut inv_freq: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / d as f64))
            .collect();
        scaling.apply(&mut inv_freq)?;
        // transformers 5.24's ROPE_INIT_FUNCTIONS["llama3"] on this config (float32): index 10
        // is kept, 16 blended, 18 and above divided by 32.
        let reference = [
            (0, 1.0),
            (10, 0.016560440883040428),
            (16, 0.000429556705057621),
            (18, 1.9461638657958247e-05),
            (22, 3.7740544485131977e-06),
            (31, 9.418306490260875e-08),
        ];
        for (i, want) in reference {
            let got = inv_freq[i];
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "frequency {i}: {got} vs transformers {want}"
            );
        }
        // Written back for a merged export, and read again the same.
        let again = LlamaConfig::from_hf_json(&config.to_hf_json()?.to_string())?;
        assert_eq!(again.rope_scaling, config.rope_scaling);
        Ok(())
    }

    #[test]
    fn unsupported_rope_scaling_is_refused_by_name() {
        let yarn = LLAMA_3_2.replace("\"llama3\"", "\"yarn\"");
        let err = LlamaConfig::from_hf_json(&yarn).unwrap_err();
        assert!(format!("{err:#}").contains("`yarn`"), "{err:#}");
        let none = LLAMA_3_2.replace(
            LLAMA_3_2[LLAMA_3_2.find("\"rope_scaling\"").unwrap()..].trim_end_matches('}'),
            "\"rope_scaling\": null\n    ",
        );
        assert_eq!(LlamaConfig::from_hf_json(&none).unwrap().rope_scaling, None);
    }

    #[test]
    fn divisors_divide_each_frequency() -> Result<()> {
        let mut inv_freq = vec![1.0, 0.5, 0.25];
        RopeScaling::Divisors {
            divisors: vec![1.0, 2.0, 8.0],
        }
        .apply(&mut inv_freq)?;
        assert_eq!(inv_freq, vec![1.0, 0.25, 0.03125]);
        let short = RopeScaling::Divisors {
            divisors: vec![1.0],
        };
        assert!(short.apply(&mut inv_freq).is_err());
        Ok(())
    }
}
