//! What bench and loop directories have in common: atomic writes, the manifest (read it,
//! refuse to continue a run with other settings) and the directory's name.
//!
//! A bench run directory is `manifest.json` (the settings), `samples/<task>.jsonl` (written
//! by `evaluate`) and the reports. Running again with the same directory continues from the
//! samples already there; other settings are refused, naming each that differs.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A bench run directory.
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens (creating if needed) a run directory for these settings. An existing manifest
    /// must hold the same settings: continuing a run with other settings would mix numbers.
    pub fn open(root: &Path, manifest: &Value) -> Result<Self> {
        std::fs::create_dir_all(root.join("samples"))
            .with_context(|| format!("creating {}", root.display()))?;
        let existing = read_manifest(root)?;
        if !existing.is_null() {
            refuse_other_settings(root, &existing["settings"], &manifest["settings"])?;
        } else {
            write_atomic(
                &root.join("manifest.json"),
                serde_json::to_string_pretty(manifest)?.as_bytes(),
            )?;
        }
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Writes a file through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A run directory's manifest, or null when it has none (sample files from another tool).
pub fn read_manifest(dir: &Path) -> Result<Value> {
    let path = dir.join("manifest.json");
    if !path.exists() {
        return Ok(Value::Null);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

/// Refuses to continue the run in `root` when its recorded settings (`old`) are not the
/// ones given now (`new`), naming each that differs.
pub fn refuse_other_settings(root: &Path, old: &Value, new: &Value) -> Result<()> {
    let differences = differences("", old, new);
    if !differences.is_empty() {
        bail!(
            "{} holds a run with other settings ({}); use the same settings or another --out",
            root.display(),
            differences.join("; ")
        );
    }
    Ok(())
}

/// The settings that differ between two JSON values, as `path: old -> new`.
fn differences(path: &str, old: &Value, new: &Value) -> Vec<String> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    let sub = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    differences(
                        &sub,
                        a.get(k).unwrap_or(&Value::Null),
                        b.get(k).unwrap_or(&Value::Null),
                    )
                })
                .collect()
        }
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![format!("{path}: {a} -> {b}")],
    }
}

/// A run directory's name as the reports' `run` column gives it (through its canonical
/// path, so `.` names the folder); empty for `/`.
pub fn dir_name(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_each_setting_that_changed() {
        let old = json!({"n_eval": 4, "training": {"lr": null, "full": false}, "task": "arith"});
        let new = json!({"n_eval": 8, "training": {"lr": 0.001, "full": false}, "task": "arith"});
        assert_eq!(
            differences("", &old, &new),
            ["n_eval: 4 -> 8", "training.lr: null -> 0.001"]
        );
        assert!(differences("", &old, &old).is_empty());
    }
}
