//! LoRA adapters loaded over the model with their rank padded to llama.cpp's SIMD width.
//!
//! llama.cpp applies an adapter as `B (A x)`: the second product is one dot product of length
//! r per output row and token, and its CPU dot products (AVX2, f16 and f32) take 32 elements a
//! SIMD step and do the rest one element at a time: at the usual rank 16, all of them. The
//! same adapter with zero rows of `A` and zero columns of `B` up to rank 32, and alpha scaled
//! so that llama.cpp's alpha / r is unchanged, computes the same function (the sums run in
//! another order) in about a third less adapter time: 64-token answers to 30 arith questions
//! x 5 ran at 133 tok/s with M0 alone, 105.2 with an f16 rank-16 adapter, 113.3 padded; the
//! loop's real call (100 arith training questions x (greedy + 4), stop at end of turn) at 95.9
//! as written and 102.3 padded (one run each, back to back). The file on disk keeps the trained
//! rank (half the bytes); the padded copy lives in a temporary file while llama.cpp loads it.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use tempfile::NamedTempFile;

use crate::error::{BackendError, Result};

/// The rank an adapter is padded to a multiple of: 32 elements, llama.cpp's dot-product step.
const RANK_MULTIPLE: usize = 32;

/// Loads the LoRA adapter GGUF at `path` over `model`, from a [`padded_copy`] when it has one.
/// A file this cannot read or copy is given to llama.cpp as written, which names what is
/// wrong with it (a copy that fails to be written costs speed, not correctness: logged).
pub(super) fn load(model: &mut LlamaModel, path: &Path) -> Result<LlamaLoraAdapter> {
    let copy = padded_copy(path).unwrap_or_else(|e| {
        tracing::warn!("{}: loading the adapter unpadded: {e}", path.display());
        None
    });
    let loadable = copy.as_ref().map_or(path, |c| c.path());
    model
        .lora_adapter_init(loadable)
        .map_err(|e| BackendError::Model {
            path: path.to_path_buf(),
            message: format!("not a LoRA adapter for this model: {e}"),
        })
}

/// A copy of the LoRA GGUF at `path` with its rank padded to a multiple of [`RANK_MULTIPLE`],
/// or `None` when it needs none or is not one this pads: every adapted tensor in a block
/// (`blk.N.*`), all of one rank, stored as f16 or f32. Anything else is loaded as written and
/// left for llama.cpp to accept or refuse.
fn padded_copy(path: &Path) -> candle_core::Result<Option<NamedTempFile>> {
    let mut file = File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let Some(rank) = single_rank(&content) else {
        return Ok(None);
    };
    let padded = rank.next_multiple_of(RANK_MULTIPLE);
    if padded == rank {
        return Ok(None);
    }
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let info = &content.tensor_infos[name];
        let t = content
            .tensor(&mut file, name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?;
        // In candle's order `A` is [r, in] and `B` is [out, r].
        let t = if name.ends_with(".lora_a") {
            let zeros = Tensor::zeros((padded - rank, t.dim(1)?), t.dtype(), t.device())?;
            Tensor::cat(&[&t, &zeros], 0)?
        } else {
            let zeros = Tensor::zeros((t.dim(0)?, padded - rank), t.dtype(), t.device())?;
            Tensor::cat(&[&t, &zeros], 1)?
        };
        tensors.push((name.as_str(), QTensor::quantize(&t, info.ggml_dtype)?));
    }
    // llama.cpp scales B A by alpha / (B's rank), or by 1 when alpha is 0 or absent.
    let scaled = match content.metadata.get("adapter.lora.alpha") {
        Some(Value::F32(alpha)) if *alpha != 0.0 => {
            Some(Value::F32(alpha * padded as f32 / rank as f32))
        }
        _ => None,
    };
    let mut metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| match (&scaled, key.as_str()) {
            (Some(alpha), "adapter.lora.alpha") => (key.as_str(), alpha),
            _ => (key.as_str(), value),
        })
        .collect();
    metadata.sort_by_key(|(key, _)| *key);
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut copy = tempfile::Builder::new().suffix(".gguf").tempfile()?;
    gguf_file::write(copy.as_file_mut(), &metadata, &tensor_refs)?;
    Ok(Some(copy))
}

/// The rank of every `.lora_a`/`.lora_b` pair when the file is one [`padded_copy`] pads.
fn single_rank(content: &gguf_file::Content) -> Option<usize> {
    let mut rank = None;
    for (name, info) in &content.tensor_infos {
        let dims = info.shape.dims();
        let this = match name.rsplit_once('.') {
            Some((_, "lora_a")) => dims.first().copied(),
            Some((_, "lora_b")) => dims.get(1).copied(),
            _ => return None,
        };
        let storable = matches!(info.ggml_dtype, GgmlDType::F16 | GgmlDType::F32);
        if !name.starts_with("blk.") || dims.len() != 2 || !storable {
            return None;
        }
        match rank {
            None => rank = this,
            Some(r) if Some(r) != this => return None,
            Some(_) => {}
        }
    }
    rank.filter(|&r| r > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an adapter GGUF of two modules at `rank` as `ty`, alpha 2 * rank.
    fn adapter(rank: usize, ty: GgmlDType) -> (NamedTempFile, Vec<(String, Tensor)>) {
        let mut tensors = Vec::new();
        for (module, (inp, out)) in [
            ("blk.0.attn_q.weight", (6, 6)),
            ("blk.0.ffn_up.weight", (6, 10)),
        ] {
            let a = Tensor::randn(0f32, 1.0, (rank, inp), &Device::Cpu).unwrap();
            let b = Tensor::randn(0f32, 1.0, (out, rank), &Device::Cpu).unwrap();
            tensors.push((format!("{module}.lora_a"), a));
            tensors.push((format!("{module}.lora_b"), b));
        }
        let q: Vec<(String, QTensor)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), QTensor::quantize(t, ty).unwrap()))
            .collect();
        let refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let alpha = Value::F32(2.0 * rank as f32);
        let kind = Value::String("lora".into());
        let mut file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
        let metadata = [("adapter.lora.alpha", &alpha), ("adapter.type", &kind)];
        gguf_file::write(file.as_file_mut(), &metadata, &refs).unwrap();
        (file, tensors)
    }

    #[test]
    fn a_rank_16_adapter_is_padded_with_zeros_to_32_at_the_same_scale() {
        let (file, written) = adapter(16, GgmlDType::F32);
        let copy = padded_copy(file.path())
            .unwrap()
            .expect("rank 16 is padded");
        let mut reader = File::open(copy.path()).unwrap();
        let content = gguf_file::Content::read(&mut reader).unwrap();
        // alpha / r: 32 / 16 as written, 64 / 32 padded.
        assert!(matches!(content.metadata["adapter.lora.alpha"], Value::F32(a) if a == 64.0));
        assert!(matches!(&content.metadata["adapter.type"], Value::String(s) if s == "lora"));
        for (name, original) in &written {
            let t = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
            let t = t.dequantize(&Device::Cpu).unwrap();
            let (kept, rest) = if name.ends_with(".lora_a") {
                assert_eq!(t.dims(), [32, original.dim(1).unwrap()], "{name}");
                (t.narrow(0, 0, 16).unwrap(), t.narrow(0, 16, 16).unwrap())
            } else {
                assert_eq!(t.dims(), [original.dim(0).unwrap(), 32], "{name}");
                (t.narrow(1, 0, 16).unwrap(), t.narrow(1, 16, 16).unwrap())
            };
            let kept: Vec<Vec<f32>> = kept.to_vec2().unwrap();
            assert_eq!(kept, original.to_vec2::<f32>().unwrap(), "{name}");
            let rest = rest.abs().unwrap().max_all().unwrap();
            assert_eq!(rest.to_scalar::<f32>().unwrap(), 0.0, "{name}");
        }
    }

    #[test]
    fn f16_stays_f16_and_a_rank_of_32_is_loaded_as_written() {
        let (file, _) = adapter(8, GgmlDType::F16);
        let copy = padded_copy(file.path()).unwrap().expect("rank 8 is padded");
        let content = gguf_file::Content::read(&mut File::open(copy.path()).unwrap()).unwrap();
        assert!(
            content
                .tensor_infos
                .values()
                .all(|i| i.ggml_dtype == GgmlDType::F16)
        );
        assert!(matches!(content.metadata["adapter.lora.alpha"], Value::F32(a) if a == 64.0));
        let (file, _) = adapter(32, GgmlDType::F16);
        assert!(padded_copy(file.path()).unwrap().is_none());
    }
}
