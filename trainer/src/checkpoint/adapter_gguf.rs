//! LoRA adapters as llama.cpp applies them at run time (`llama_adapter_lora_init`, the format
//! its `convert_lora_to_gguf.py` writes): per adapted matrix `blk.N.<matrix>.weight.lora_a`
//! (`[r, in]`, GGUF dimensions `[in, r]`) and `.lora_b` (`[out, r]`), and the metadata
//! `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`; llama.cpp scales
//! `B A` by alpha / r, as PEFT does. Loading megabytes over a base model already in memory,
//! instead of a merged copy of every weight, is what lets an engine switch rounds cheaply and
//! sample exactly what was trained (the update is not rounded into the base's f16 weights).

use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{DType, Device};

use super::gguf::{gguf_name, read_tensor};
use super::{GgufSource, GgufType, LoraTensors, Source, Weights, gguf_rows, hf_name, read_peft};
use crate::config::LlamaConfig;

/// Writes `lora` as a llama.cpp LoRA GGUF for the base model `source` (its architecture, and
/// B's q/k rows in its rotary layout), tensors as `ty` (f16 halves the file; llama.cpp then
/// multiplies in f16 as it does for an f16 model). Atomic.
pub fn export_lora_gguf(
    source: &GgufSource,
    config: &LlamaConfig,
    lora: &LoraTensors,
    ty: GgufType,
    out: &Path,
) -> Result<()> {
    let architecture = source
        .metadata
        .get("general.architecture")
        .context("the base GGUF has no general.architecture")?
        .clone();
    let mut tensors = Vec::with_capacity(2 * lora.modules.len());
    for (module, (a, b)) in &lora.modules {
        let weight = format!("{module}.weight");
        let name = gguf_name(&weight)
            .with_context(|| format!("{module}: no llama.cpp tensor to adapt"))?;
        let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        // B's rows are the matrix's output rows, which GGUF keeps in its rotary order.
        let b = gguf_rows(b, &weight, source.rope, config, true)?;
        tensors.push((format!("{name}.lora_a"), QTensor::quantize(&a, ty.ggml())?));
        tensors.push((format!("{name}.lora_b"), QTensor::quantize(&b, ty.ggml())?));
    }
    let general_type = Value::String("adapter".into());
    let adapter_type = Value::String("lora".into());
    let alpha = Value::F32(lora.alpha as f32);
    let metadata: Vec<(&str, &Value)> = vec![
        ("adapter.lora.alpha", &alpha),
        ("adapter.type", &adapter_type),
        ("general.architecture", &architecture),
        ("general.type", &general_type),
    ];
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    super::write_file_atomically(out, |writer| {
        gguf_file::write(writer, &metadata, &refs)?;
        Ok(())
    })
}

/// Reads a llama.cpp LoRA GGUF written by [`export_lora_gguf`] (or by llama.cpp's converter)
/// for the GGUF base model `base`: per module `A` `[r, in]` and `B` `[out, r]` with Hugging
/// Face names and rows, as `dtype`. A loop round continues the adapter it sampled this way.
pub fn read_lora_gguf(
    path: &Path,
    base: &Weights,
    dtype: DType,
    device: &Device,
) -> Result<LoraTensors> {
    let Source::Gguf(source) = &base.source else {
        bail!("{}: a LoRA GGUF adapts a GGUF base model", path.display());
    };
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = gguf_file::Content::read(&mut file)
        .with_context(|| format!("{}: not a readable GGUF", path.display()))?;
    let text = |key: &str| match content.metadata.get(key) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    if text("general.type") != Some("adapter") || text("adapter.type") != Some("lora") {
        bail!(
            "{}: not a LoRA adapter GGUF (general.type, adapter.type)",
            path.display()
        );
    }
    let alpha = match content.metadata.get("adapter.lora.alpha") {
        Some(Value::F32(alpha)) => f64::from(*alpha),
        _ => bail!(
            "{}: field adapter.lora.alpha is missing or not f32",
            path.display()
        ),
    };
    let mut modules = std::collections::BTreeMap::new();
    // In name order, so that a bad file always names the same tensor.
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let Some(weight) = name.strip_suffix(".lora_a") else {
            continue;
        };
        let hf = hf_name(weight).with_context(|| {
            format!("{}: {name} adapts no tensor the model has", path.display())
        })?;
        let a = read_tensor(&content, &mut file, path, name)?;
        let b = read_tensor(&content, &mut file, path, &format!("{weight}.lora_b"))?;
        let b = gguf_rows(b, &hf, source.rope, &base.config, false)?;
        let module = hf.strip_suffix(".weight").unwrap_or(&hf).to_string();
        modules.insert(
            module,
            (
                a.to_dtype(dtype)?.to_device(device)?,
                b.to_dtype(dtype)?.to_device(device)?,
            ),
        );
    }
    let Some((a, _)) = modules.values().next() else {
        bail!("{}: no .lora_a/.lora_b tensors", path.display());
    };
    let rank = a.dims()[0];
    Ok(LoraTensors {
        rank,
        alpha,
        dropout: 0.0,
        target_modules: Vec::new(),
        modules,
    })
}

/// Writes a PEFT adapter folder (this trainer's, or one PEFT or TRL wrote) as a llama.cpp
/// LoRA GGUF (tensors as `ty`) for the GGUF base model it adapts.
pub fn peft_to_lora_gguf(base: &Path, adapter: &Path, ty: GgufType, out: &Path) -> Result<()> {
    let weights = Weights::load(base, DType::F32, &Device::Cpu)?;
    let Source::Gguf(source) = &weights.source else {
        bail!("{}: a LoRA GGUF needs a GGUF base model", base.display());
    };
    let lora = read_peft(adapter, DType::F32, &Device::Cpu)
        .with_context(|| format!("reading the PEFT adapter {}", adapter.display()))?;
    export_lora_gguf(source, &weights.config, &lora, ty, out)
}
