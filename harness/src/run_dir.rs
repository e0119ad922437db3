//! A bench run directory: `manifest.json` (the settings), `samples/<task>.jsonl` (written by
//! `evaluate`) and the reports. Running again with the same directory continues from the
//! samples already there; other settings are refused, naming each that differs.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A run directory.
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens (creating if needed) a run directory for these settings. An existing manifest
    /// must hold the same settings: continuing a run with other settings would mix numbers.
    pub fn open(root: &Path, manifest: &Value) -> Result<Self> {
        std::fs::create_dir_all(root.join("samples"))
            .with_context(|| format!("creating {}", root.display()))?;
        let existing = crate::reports::manifest(root)?;
        if !existing.is_null() {
            let differences =
                crate::loop_dir::differences("", &existing["settings"], &manifest["settings"]);
            if !differences.is_empty() {
                bail!(
                    "{} holds a run with other settings ({}); use the same settings or another --out",
                    root.display(),
                    differences.join("; ")
                );
            }
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
