//! Atomic writes: a killed export leaves the previous file or folder, never half of one.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes a file through a temporary file in the same folder, synced, then renamed over `path`.
pub fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("temporary file in {}", dir.display()))?;
    {
        let mut writer = std::io::BufWriter::new(temp.as_file());
        write(&mut writer).with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::flush(&mut writer)?;
    }
    temp.as_file().sync_all()?;
    temp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Fills a fresh temporary folder beside `path`, then puts it in place: by an atomic exchange
/// (`renameat2(RENAME_EXCHANGE)`) when `path` exists, so that a reader or a crash sees either
/// the whole old folder or the whole new one.
pub fn write_dir_atomically(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(dir)?;
    fill(temp.path())?;
    for entry in std::fs::read_dir(temp.path())? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    if path.exists() {
        nix::fcntl::renameat2(
            None,
            temp.path(),
            None,
            path,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .with_context(|| format!("exchanging the new folder with {}", path.display()))?;
        // `temp` now holds the old folder; dropping it removes it.
    } else {
        let temp = temp.keep();
        std::fs::rename(&temp, path)
            .with_context(|| format!("renaming into {}", path.display()))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_is_exchanged_whole() -> Result<()> {
        let root = tempfile::tempdir()?;
        let target = root.path().join("adapter");
        write_dir_atomically(&target, |d| Ok(std::fs::write(d.join("a"), "1")?))?;
        write_dir_atomically(&target, |d| Ok(std::fs::write(d.join("b"), "2")?))?;
        assert!(!target.join("a").exists());
        assert_eq!(std::fs::read_to_string(target.join("b"))?, "2");
        // A failing fill leaves the previous folder untouched and no temporary behind.
        let failed = write_dir_atomically(&target, |d| {
            std::fs::write(d.join("c"), "3")?;
            anyhow::bail!("killed")
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(target.join("b"))?, "2");
        assert_eq!(std::fs::read_dir(root.path())?.count(), 1);
        Ok(())
    }
}
