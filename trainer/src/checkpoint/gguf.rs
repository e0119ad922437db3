//! GGUF in and out. Quantised tensors are dequantised on load; export writes f32, f16 or
//! q8_0 with the source's metadata (tokenizer, chat template) and its unused tensors kept.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use super::{Source, Weights, gguf_rows, hf_name};
use crate::config::{GgufRope, LlamaConfig, RopeScaling};

/// What a GGUF export needs from the file the weights came from.
pub struct GgufSource {
    pub path: PathBuf,
    pub metadata: HashMap<String, Value>,
    pub rope: GgufRope,
    /// GGUF tensor names in file order.
    pub tensor_names: Vec<String>,
}

/// Tensor type of a GGUF export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    F32,
    F16,
    Q8_0,
}

impl GgufType {
    pub(crate) fn ggml(self) -> GgmlDType {
        match self {
            GgufType::F32 => GgmlDType::F32,
            GgufType::F16 => GgmlDType::F16,
            GgufType::Q8_0 => GgmlDType::Q8_0,
        }
    }

    /// `general.file_type` (llama.cpp's `LLAMA_FTYPE_*`).
    fn file_type(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
            GgufType::Q8_0 => 7,
        }
    }
}

impl std::str::FromStr for GgufType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(GgufType::F32),
            "f16" => Ok(GgufType::F16),
            "q8_0" => Ok(GgufType::Q8_0),
            other => Err(format!("`{other}`: expected f32, f16 or q8_0")),
        }
    }
}

/// GGUF name of a Hugging Face tensor name.
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let module = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{module}.{kind}"))
}

#[cfg(test)]
pub(crate) const ALL_GGUF_NAMES_FOR_TEST: &[&str] = &[
    "token_embd.weight",
    "output_norm.weight",
    "output.weight",
    "blk.3.attn_norm.weight",
    "blk.3.ffn_norm.weight",
    "blk.3.attn_q.weight",
    "blk.3.attn_q.bias",
    "blk.3.attn_k.weight",
    "blk.3.attn_v.weight",
    "blk.3.attn_output.weight",
    "blk.3.ffn_gate.weight",
    "blk.3.ffn_up.weight",
    "blk.3.ffn_down.weight",
];

pub(super) fn load(path: &Path, dtype: DType, device: &Device) -> Result<Weights> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = gguf_file::Content::read(&mut file)
        .with_context(|| format!("{}: not a readable GGUF", path.display()))?;
    let mut tensor_names: Vec<(u64, String)> = content
        .tensor_infos
        .iter()
        .map(|(name, info)| (info.offset, name.clone()))
        .collect();
    tensor_names.sort();
    let tensor_names: Vec<String> = tensor_names.into_iter().map(|(_, n)| n).collect();
    let vocab_size = content
        .tensor_infos
        .get("token_embd.weight")
        .with_context(|| format!("{}: no token_embd.weight", path.display()))?
        .shape
        .dims()[0];
    let tied = !content.tensor_infos.contains_key("output.weight");
    let bias = content.tensor_infos.contains_key("blk.0.attn_q.bias");
    let (mut config, rope) = LlamaConfig::from_gguf(&content.metadata, vocab_size, tied, bias)
        .with_context(|| path.display().to_string())?;
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        // Llama 3.1's rotary scaling, as llama.cpp's converter stores it.
        let divisors = read_tensor(&content, &mut file, path, "rope_freqs.weight")?
            .to_dtype(DType::F64)
            .and_then(|t| t.flatten_all()?.to_vec1::<f64>())
            .with_context(|| format!("{}: tensor rope_freqs.weight", path.display()))?;
        config.rope_scaling = Some(RopeScaling::Divisors { divisors });
    }
    let mut tensors = BTreeMap::new();
    for name in &tensor_names {
        let Some(hf) = hf_name(name) else { continue };
        let tensor = read_tensor(&content, &mut file, path, name)?;
        let tensor = gguf_rows(tensor, &hf, rope, &config, false)?;
        tensors.insert(hf, tensor.to_dtype(dtype)?.to_device(device)?);
    }
    Ok(Weights {
        config,
        tensors,
        source: Source::Gguf(Box::new(GgufSource {
            path: path.to_path_buf(),
            metadata: content.metadata,
            rope,
            tensor_names,
        })),
    })
}

/// The tensor `name` of the GGUF `path` (read as `content`), dequantised to f32 on the CPU.
pub(super) fn read_tensor(
    content: &gguf_file::Content,
    file: &mut File,
    path: &Path,
    name: &str,
) -> Result<Tensor> {
    content
        .tensor(file, name, &Device::Cpu)
        .and_then(|q| q.dequantize(&Device::Cpu))
        .with_context(|| format!("{}: tensor {name}", path.display()))
}

/// Writes `tensors` (Hugging Face names and layout, LoRA already merged) as a GGUF that
/// llama.cpp loads: the source GGUF's metadata and tensor order, q/k rows converted back to
/// its rotary layout, norms and biases in f32 and every matrix in `ty`. Atomic.
pub fn export_gguf(
    source: &GgufSource,
    config: &LlamaConfig,
    tensors: &BTreeMap<String, Tensor>,
    ty: GgufType,
    out: &Path,
) -> Result<()> {
    let mut source_file = File::open(&source.path)
        .with_context(|| format!("re-opening the source GGUF {}", source.path.display()))?;
    let content = gguf_file::Content::read(&mut source_file)?;
    let mut qtensors = Vec::with_capacity(source.tensor_names.len());
    for name in &source.tensor_names {
        let qtensor = match hf_name(name).and_then(|hf| tensors.get(&hf).map(|t| (hf, t))) {
            Some((hf, tensor)) => {
                let tensor = tensor.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
                let tensor = gguf_rows(tensor, &hf, source.rope, config, true)?;
                let row = *tensor.dims().last().unwrap_or(&0);
                let ggml = if tensor.rank() < 2 {
                    GgmlDType::F32
                } else if ty == GgufType::Q8_0 && row % 32 != 0 {
                    GgmlDType::F16
                } else {
                    ty.ggml()
                };
                QTensor::quantize(&tensor, ggml).with_context(|| format!("quantising {name}"))?
            }
            // Tensors the model does not train (rope_freqs, ...) travel unchanged.
            None => content.tensor(&mut source_file, name, &Device::Cpu)?,
        };
        qtensors.push((name.as_str(), qtensor));
    }
    let file_type = Value::U32(ty.file_type());
    let mut metadata: Vec<(&str, &Value)> = source
        .metadata
        .iter()
        // The writer aligns to 32 bytes, GGUF's default; a different stored alignment
        // would misplace every tensor.
        .filter(|(k, _)| k.as_str() != "general.alignment" && k.as_str() != "general.file_type")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.push(("general.file_type", &file_type));
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    let tensor_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(n, t)| (*n, t)).collect();
    super::write_file_atomically(out, |writer| {
        // The GGUF writer seeks; BufWriter<&File> implements Seek.
        gguf_file::write(writer, &metadata, &tensor_refs)?;
        Ok(())
    })
}
