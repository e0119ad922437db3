//! Hugging Face folders: `config.json` + `*.safetensors`, in and out.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};

use super::{Source, Weights};
use crate::config::LlamaConfig;

/// Files of a Hugging Face folder that describe the tokenizer and generation; copied into a
/// merged export so that the folder is usable on its own.
const COMPANION_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
];

pub(super) fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Weights> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config =
        LlamaConfig::from_hf_json(&text).with_context(|| format!("{}", config_path.display()))?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *.safetensors file", dir.display());
    }
    let mut tensors = BTreeMap::new();
    for file in &files {
        let loaded = candle_core::safetensors::load(file, &Device::Cpu)
            .with_context(|| format!("reading {}", file.display()))?;
        for (name, tensor) in loaded {
            tensors.insert(name, tensor.to_dtype(dtype)?.to_device(device)?);
        }
    }
    Ok(Weights {
        config,
        tensors,
        source: Source::HfDir(dir.to_path_buf()),
    })
}

/// Writes a Hugging Face folder (`config.json`, `model.safetensors` in f32, and the source
/// folder's tokenizer files when the weights came from one). Atomic.
pub fn export_hf(
    config: &LlamaConfig,
    tensors: &BTreeMap<String, Tensor>,
    source: &Source,
    out: &Path,
) -> Result<()> {
    let cpu: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    super::write_dir_atomically(out, |dir| {
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config.to_hf_json()?)?,
        )?;
        candle_core::safetensors::save(&cpu, dir.join("model.safetensors"))?;
        if let Source::HfDir(src) = source {
            for name in COMPANION_FILES {
                if src.join(name).exists() {
                    std::fs::copy(src.join(name), dir.join(name))?;
                }
            }
        }
        Ok(())
    })
}
