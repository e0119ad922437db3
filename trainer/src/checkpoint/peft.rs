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
    /// As configured (`all-linear` or projection names); the export writes the names of the
    /// modules actually trained instead (see [`trained_module_names`]).
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
        "target_modules": trained_module_names(lora),
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

/// The last path component of every module trained (`q_proj`, `down_proj`), sorted. PEFT
/// expands `all-linear` only when `target_modules` is that string, and matches every entry of
/// a list as a module name, so `["all-linear"]` would match nothing when PEFT loads the
/// adapter; the names actually trained load under every PEFT version and in vLLM.
pub fn trained_module_names(lora: &LoraTensors) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = lora
        .modules
        .keys()
        .map(|m| m.rsplit('.').next().unwrap_or(m))
        .collect();
    names.into_iter().map(str::to_string).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_linear_is_written_as_the_module_names_trained() {
        let zeros = |r, c| Tensor::zeros((r, c), DType::F32, &Device::Cpu).unwrap();
        let mut modules = BTreeMap::new();
        for layer in 0..2 {
            for proj in ["self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"] {
                modules.insert(
                    format!("model.layers.{layer}.{proj}"),
                    (zeros(2, 4), zeros(4, 2)),
                );
            }
        }
        let lora = LoraTensors {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            target_modules: vec!["all-linear".into()],
            modules,
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter");
        export_peft(&lora, "m0.gguf", &out).unwrap();
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            config["target_modules"],
            serde_json::json!(["down_proj", "o_proj", "q_proj"])
        );
        let back = read_peft(&out, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(back.modules.len(), 6);
    }
}
