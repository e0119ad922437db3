//! LoRA adapters as llama.cpp applies them at run time (`llama_adapter_lora_init`, the format
//! its `convert_lora_to_gguf.py` writes): per adapted matrix `blk.N.<matrix>.weight.lora_a`
//! (`[r, in]`, GGUF dimensions `[in, r]`) and `.lora_b` (`[out, r]`), and the metadata
//! `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`; llama.cpp scales
//! `B A` by alpha / r, as PEFT does. Loading megabytes over a base model already in memory,
//! instead of a merged copy of every weight, is what lets an engine switch rounds cheaply and
//! sample exactly what was trained (the update is not rounded into the base's f16 weights).

use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};

use super::gguf::gguf_name;
use super::{GgufSource, LoraTensors, Source, Weights, permute_rotary, read_peft, rotary_heads};
use crate::config::{GgufRope, LlamaConfig};

/// Writes `lora` as a llama.cpp LoRA GGUF for the base model `source` (its architecture, and
/// B's q/k rows in its rotary layout), tensors in f32 (what was trained). Atomic.
pub fn export_lora_gguf(
    source: &GgufSource,
    config: &LlamaConfig,
    lora: &LoraTensors,
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
        let b = match (source.rope, rotary_heads(&weight, config)) {
            (GgufRope::Interleaved, Some(heads)) => permute_rotary(&b, heads, true)?,
            _ => b,
        };
        tensors.push((
            format!("{name}.lora_a"),
            QTensor::quantize(&a, GgmlDType::F32)?,
        ));
        tensors.push((
            format!("{name}.lora_b"),
            QTensor::quantize(&b, GgmlDType::F32)?,
        ));
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

/// Writes a PEFT adapter folder (this trainer's, or one PEFT or TRL wrote) as a llama.cpp
/// LoRA GGUF for the GGUF base model it adapts.
pub fn peft_to_lora_gguf(base: &Path, adapter: &Path, out: &Path) -> Result<()> {
    let weights = Weights::load(base, DType::F32, &Device::Cpu)?;
    let Source::Gguf(source) = &weights.source else {
        bail!("{}: a LoRA GGUF needs a GGUF base model", base.display());
    };
    let lora = read_peft(adapter, DType::F32, &Device::Cpu)
        .with_context(|| format!("reading the PEFT adapter {}", adapter.display()))?;
    export_lora_gguf(source, &weights.config, &lora, out)
}
