//! PEFT LoRA adapter folders, the format vLLM's `/v1/load_lora_adapter` and `peft` read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

/// A trained LoRA: per module (`model.layers.0.self_attn.q_proj`), `A` `[r, in]` and
/// `B` `[out, r]`; the update to the module's weight is `B A * alpha / r`.
pub struct LoraTensors {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module suffixes trained (`q_proj`, `v_proj`, ...), as `target_modules`.
    pub target_modules: Vec<String>,
    pub modules: BTreeMap<String, (Tensor, Tensor)>,
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` (tensor names
/// `base_model.model.<module>.lora_A.weight` / `lora_B.weight`, f32). Atomic.
pub fn export_peft(lora: &LoraTensors, base_model: &str, out: &Path) -> Result<()> {
    let mut tensors = HashMap::new();
    for (module, (a, b)) in &lora.modules {
        let prefix = format!("base_model.model.{module}");
        tensors.insert(
            format!("{prefix}.lora_A.weight"),
            a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
        );
        tensors.insert(
            format!("{prefix}.lora_B.weight"),
            b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
        );
    }
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.target_modules,
        "bias": "none",
        "modules_to_save": null,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
    });
    super::write_dir_atomically(out, |dir| {
        std::fs::write(
            dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&config)?,
        )?;
        candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
        Ok(())
    })
}
