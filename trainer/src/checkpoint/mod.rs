//! Reading and writing model weights: GGUF (llama.cpp), Hugging Face safetensors folders and
//! PEFT LoRA adapters. Inside the trainer every tensor carries its Hugging Face name
//! (`model.layers.3.self_attn.q_proj.weight`) and layout; the GGUF side converts names and
//! the rotary row order at the boundary.

mod adapter_gguf;
mod atomic;
mod gguf;
mod hf;
mod peft;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};

pub use adapter_gguf::{export_lora_gguf, peft_to_lora_gguf, read_lora_gguf};
pub use atomic::{write_dir_atomically, write_file_atomically};
pub use gguf::{GgufSource, GgufType, export_gguf};
pub use hf::export_hf;
pub use peft::{LoraTensors, export_peft, read_peft};

use crate::config::{GgufRope, LlamaConfig};

/// A model's weights with Hugging Face names and layout, and what is needed to write them
/// back in the format they came from.
pub struct Weights {
    pub config: LlamaConfig,
    pub tensors: BTreeMap<String, Tensor>,
    pub source: Source,
}

/// Where weights were loaded from.
pub enum Source {
    /// A GGUF: its metadata (tokenizer, chat template) and tensors that the model does not use
    /// are carried into exports.
    Gguf(Box<GgufSource>),
    /// A Hugging Face folder (config.json + *.safetensors).
    HfDir(PathBuf),
    /// Built in memory (tests).
    Memory,
}

impl Weights {
    /// Loads a `.gguf` file or a Hugging Face folder, converting every tensor to `dtype`.
    pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        if path.is_dir() {
            hf::load(path, dtype, device)
        } else if path.extension().is_some_and(|e| e == "gguf") {
            gguf::load(path, dtype, device)
        } else {
            bail!(
                "{}: expected a .gguf file or a Hugging Face folder (config.json + *.safetensors)",
                path.display()
            )
        }
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("weights lack tensor {name}"))
    }
}

/// Hugging Face name of a GGUF tensor, for the tensors the model uses.
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let module = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{kind}"))
}

/// Converts q/k rows of one projection between the Hugging Face "halves" rotary layout and
/// llama.cpp's interleaved one. `to_interleaved` picks the direction. Works for weights
/// `[out, in]` and biases `[out]`.
pub fn permute_rotary(tensor: &Tensor, heads: usize, to_interleaved: bool) -> Result<Tensor> {
    let dims = tensor.dims().to_vec();
    let out = dims[0];
    let cols = if dims.len() == 2 { dims[1] } else { 1 };
    let half = out / heads / 2;
    let reshaped = if to_interleaved {
        tensor.reshape((heads, 2, half, cols))?
    } else {
        tensor.reshape((heads, half, 2, cols))?
    };
    Ok(reshaped
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims.as_slice())?)
}

/// A tensor's rows (a weight, a bias or a LoRA B of the module `hf_name` names) between the
/// trainer's Hugging Face order and a GGUF's: q/k rows are permuted when the GGUF keeps them
/// interleaved (`to_gguf` picks the direction); every other tensor is returned as it is.
pub(crate) fn gguf_rows(
    tensor: Tensor,
    hf_name: &str,
    rope: GgufRope,
    config: &LlamaConfig,
    to_gguf: bool,
) -> Result<Tensor> {
    match (rope, rotary_heads(hf_name, config)) {
        (GgufRope::Interleaved, Some(heads)) => permute_rotary(&tensor, heads, to_gguf),
        _ => Ok(tensor),
    }
}

/// The rotary-permuted tensors of a layer and their head counts.
pub(crate) fn rotary_heads(name: &str, config: &LlamaConfig) -> Option<usize> {
    if name.contains(".self_attn.q_proj.") {
        Some(config.num_attention_heads)
    } else if name.contains(".self_attn.k_proj.") {
        Some(config.num_key_value_heads)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.ffn_down.weight").as_deref(),
            Some("model.layers.0.mlp.down_proj.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
        for name in gguf::ALL_GGUF_NAMES_FOR_TEST {
            let hf = hf_name(name).unwrap();
            assert_eq!(gguf::gguf_name(&hf).as_deref(), Some(*name));
        }
    }

    #[test]
    fn rotary_permutation_round_trips_and_interleaves() -> Result<()> {
        // One head of dimension 4, two input columns: rows (0,1,2,3) in halves layout pair
        // rows 0 with 2 and 1 with 3; interleaved they become adjacent: (0,2,1,3).
        let w = Tensor::arange(0f32, 8., &Device::Cpu)?.reshape((4, 2))?;
        let inter = permute_rotary(&w, 1, true)?;
        assert_eq!(
            inter.to_vec2::<f32>()?,
            vec![vec![0., 1.], vec![4., 5.], vec![2., 3.], vec![6., 7.]]
        );
        let back = permute_rotary(&inter, 1, false)?;
        assert_eq!(back.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        Ok(())
    }
}
