//! A run directory: `manifest.json` (the settings), `samples/<task>.jsonl` (one line per
//! response, appended and flushed as each completes, so a crash loses at most the line
//! being written) and the reports. Running again with the same directory continues from
//! the samples already there.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use benchmarks::{Sample, read_sample_lines};
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
        let path = root.join("manifest.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let existing: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            if existing["settings"] != manifest["settings"] {
                bail!(
                    "{} holds a run with other settings; use another --out (existing: {}, new: {})",
                    root.display(),
                    existing["settings"],
                    manifest["settings"]
                );
            }
        } else {
            write_atomic(&path, serde_json::to_string_pretty(manifest)?.as_bytes())?;
        }
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sample file of a task.
    pub fn samples_path(&self, task: &str) -> PathBuf {
        self.root.join("samples").join(format!("{task}.jsonl"))
    }

    /// The samples already written for a task. A last line cut short by a crash is dropped
    /// (and cut from the file) so that it is generated again.
    pub fn existing_samples(&self, task: &str) -> Result<Vec<Sample>> {
        let path = self.samples_path(task);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if !text.is_empty() && !text.ends_with('\n') {
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            tracing::warn!(file = %path.display(), "dropping a partly written last line");
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(keep as u64)?;
        }
        Ok(read_sample_lines(&path)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// An appender for a task's sample file.
    pub fn appender(&self, task: &str) -> Result<Appender> {
        let path = self.samples_path(task);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Appender { file, path })
    }
}

/// Appends sample lines, each flushed to the OS before the next.
pub struct Appender {
    file: File,
    path: PathBuf,
}

impl Appender {
    pub fn append(&mut self, sample: &Sample) -> Result<()> {
        let mut line = serde_json::to_vec(sample)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Which (problem, sample index) pairs a set of samples already covers.
pub fn done_keys(samples: &[Sample]) -> HashSet<(String, Option<u32>)> {
    samples
        .iter()
        .map(|s| (s.problem_id.clone(), s.sample_index))
        .collect()
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
