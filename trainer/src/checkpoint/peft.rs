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

/// Reads a PEFT adapter folder written by [`export_peft`] (or by PEFT itself): its settings
/// and, per module, `A` `[r, in]` and `B` `[out, r]` as stored (B unscaled).
pub fn read_peft(dir: &Path, dtype: DType, device: &Device) -> Result<LoraTensors> {
    use anyhow::Context;
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not JSON", config_path.display()))?;
    let field = |name: &str| {
        config
            .get(name)
            .filter(|v| !v.is_null())
            .with_context(|| format!("{}: field `{name}` is missing", config_path.display()))
    };
    let rank = field("r")?
        .as_u64()
        .with_context(|| format!("{}: field `r`: not an integer", config_path.display()))?
        as usize;
    let alpha = field("lora_alpha")?.as_f64().with_context(|| {
        format!(
            "{}: field `lora_alpha`: not a number",
            config_path.display()
        )
    })?;
    let dropout = config
        .get("lora_dropout")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let target_modules = match field("target_modules")? {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => anyhow::bail!(
            "{}: field `target_modules`: not a string or list",
            config_path.display()
        ),
    };
    let weights_path = dir.join("adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .with_context(|| format!("reading {}", weights_path.display()))?;
    let mut modules = BTreeMap::new();
    for (name, a) in &tensors {
        let Some(module) = name
            .strip_prefix("base_model.model.")
            .and_then(|n| n.strip_suffix(".lora_A.weight"))
        else {
            continue;
        };
        let b_name = format!("base_model.model.{module}.lora_B.weight");
        let b = tensors
            .get(&b_name)
            .with_context(|| format!("{}: {name} has no {b_name}", weights_path.display()))?;
        modules.insert(
            module.to_string(),
            (
                a.to_dtype(dtype)?.to_device(device)?,
                b.to_dtype(dtype)?.to_device(device)?,
            ),
        );
    }
    if modules.is_empty() {
        anyhow::bail!("{}: no lora_A/lora_B tensors", weights_path.display());
    }
    Ok(LoraTensors {
        rank,
        alpha,
        dropout,
        target_modules,
        modules,
    })
}
