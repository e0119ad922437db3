//! The file system a program sees: a new root of its own, built in its mount namespace and
//! entered with pivot_root. It holds only what Python needs (the system's `/usr`, `/bin`,
//! `/lib*`, `/etc`, `/dev`, `/proc` and the interpreter's installation), read-only; its own
//! empty tmpfs on `/tmp`, `/var/tmp` and `/dev/shm`; and its own directory, writable, at its
//! usual path. The rest of the host (the checkout, home directories, the data sets, the
//! harness's binary, which carries them) is not there to read: a program cannot look up its
//! own test's expected values on disk.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use super::{PRIVATE_DIRS, TMPFS_NAME};
use crate::error::{BenchError, Result};

/// Top-level host entries the new root shows (those that exist; links kept as links).
const SYSTEM_ENTRIES: [&str; 8] = [
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
];
/// Bound as they are: devices (null, urandom) and the process file system.
const KERNEL_ENTRIES: [&str; 2] = ["dev", "proc"];
/// The new root's own tmpfs: just the mount points and links, read-only once built.
const ROOT_OPTIONS: &str = "size=1m,mode=0755";

/// What a program's mount namespace gets, prepared before fork: nothing may be allocated
/// between fork and exec. Paths named `…_in_root` lie under `new_root` before the pivot.
pub(super) struct MountPlan {
    /// The empty host directory the new root is built on.
    new_root: CString,
    /// Directories made in the new root, parents first.
    dirs: Vec<CString>,
    /// Top-level links of the host (`/lib` -> `usr/lib`): (target, link in the new root).
    links: Vec<(CString, CString)>,
    /// Host directories bound at the same path: (host path, path in the new root).
    binds: Vec<(CString, CString)>,
    /// Files under a bound directory hidden behind /dev/null (the harness's own binary).
    masks: Vec<CString>,
    /// `/tmp`, `/var/tmp`, `/dev/shm` in the new root.
    private_dirs: Vec<CString>,
    /// The job directory and its ancestors in the new root, outermost first.
    job_path: Vec<CString>,
    /// The job directory as the program sees it after the pivot.
    job_dir: CString,
    tmpfs_name: CString,
    tmpfs_options: CString,
    root_options: CString,
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| BenchError::Sandbox(format!("a NUL in path {}", path.display())))
}

/// `path` (absolute) under `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// `path`'s ancestors below `/` and itself, outermost first.
fn chain(path: &Path) -> Vec<&Path> {
    let mut all: Vec<&Path> = path.ancestors().filter(|p| p.parent().is_some()).collect();
    all.reverse();
    all
}

impl MountPlan {
    /// The plan for a program in `job_dir`, its root built on the empty `new_root`, run by
    /// `python`; private tmpfs mounts get `size` bytes each.
    pub(super) fn new(job_dir: &Path, new_root: &Path, python: &Path, size: u64) -> Result<Self> {
        let mut links = Vec::new();
        let mut bound: Vec<PathBuf> = Vec::new();
        for name in SYSTEM_ENTRIES.iter().chain(&KERNEL_ENTRIES) {
            let host = Path::new("/").join(name);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(&host).map_err(|e| BenchError::io(&host, e))?;
                    links.push((target, under(new_root, &host)));
                }
                Ok(m) if m.is_dir() => bound.push(host),
                _ => {}
            }
        }
        // An interpreter installed elsewhere (/opt/python3.12/bin/python3): its prefix.
        let python = python
            .canonicalize()
            .unwrap_or_else(|_| python.to_path_buf());
        let visible = |p: &Path, bound: &[PathBuf]| bound.iter().any(|b| p.starts_with(b));
        if let Some(prefix) = python.parent().and_then(Path::parent)
            && !visible(&python, &bound)
            && prefix.parent().is_some()
        {
            bound.push(prefix.to_path_buf());
        }
        let masks = std::env::current_exe()
            .and_then(|exe| exe.canonicalize())
            .ok()
            .filter(|exe| visible(exe, &bound))
            .map(|exe| under(new_root, &exe));
        let mut dirs: Vec<PathBuf> = bound
            .iter()
            .flat_map(|host| chain(host).into_iter().map(|p| under(new_root, p)))
            .collect();
        let binds: Vec<(PathBuf, PathBuf)> = bound
            .iter()
            .map(|host| (host.clone(), under(new_root, host)))
            .collect();
        for dir in ["tmp", "var", "var/tmp"] {
            dirs.push(new_root.join(dir));
        }
        let job_path: Vec<PathBuf> = chain(job_dir).iter().map(|p| under(new_root, p)).collect();
        dirs.extend(job_path.iter().cloned());
        let private_dirs = PRIVATE_DIRS
            .iter()
            .filter(|d| Path::new(d).is_dir())
            .map(|d| under(new_root, Path::new(d)));
        let c_all = |paths: &mut dyn Iterator<Item = PathBuf>| -> Result<Vec<CString>> {
            paths.map(|p| c_path(&p)).collect()
        };
        let c_pairs = |pairs: Vec<(PathBuf, PathBuf)>| -> Result<Vec<(CString, CString)>> {
            pairs
                .into_iter()
                .map(|(a, b)| Ok((c_path(&a)?, c_path(&b)?)))
                .collect()
        };
        Ok(MountPlan {
            new_root: c_path(new_root)?,
            dirs: c_all(&mut dirs.into_iter())?,
            links: c_pairs(links)?,
            binds: c_pairs(binds)?,
            masks: c_all(&mut masks.into_iter())?,
            private_dirs: c_all(&mut private_dirs.into_iter())?,
            job_path: c_all(&mut job_path.into_iter())?,
            job_dir: c_path(job_dir)?,
            tmpfs_name: c_path(Path::new(TMPFS_NAME))?,
            tmpfs_options: c_path(Path::new(&format!("size={size},mode=1777")))?,
            root_options: c_path(Path::new(ROOT_OPTIONS))?,
        })
    }
}

/// In the program's new mount namespace (made private first, so nothing reaches the host),
/// builds the new root of [`MountPlan`] and moves into it. Runs between fork and exec.
pub(super) fn enter_private_root(plan: &MountPlan) -> nix::Result<()> {
    let check = |rc: libc::c_int| nix::errno::Errno::result(rc).map(drop);
    let none = std::ptr::null::<libc::c_char>();
    let no_data = std::ptr::null::<libc::c_void>();
    // SAFETY: mount, mkdir, symlink, chdir, umount2 and the mount_setattr and pivot_root
    // syscalls take NUL-terminated strings that live in `plan` (made before fork) or are
    // static, and a struct on the stack.
    unsafe {
        check(libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            no_data,
        ))?;
        let root = plan.new_root.as_ptr();
        let options = plan.root_options.as_ptr().cast();
        check(libc::mount(
            c"harness-root".as_ptr(),
            root,
            c"tmpfs".as_ptr(),
            0,
            options,
        ))?;
        for dir in &plan.dirs {
            libc::mkdir(dir.as_ptr(), 0o755);
        }
        for (target, link) in &plan.links {
            check(libc::symlink(target.as_ptr(), link.as_ptr()))?;
        }
        let bind = libc::MS_BIND | libc::MS_REC;
        for (host, inside) in &plan.binds {
            check(libc::mount(
                host.as_ptr(),
                inside.as_ptr(),
                none,
                bind,
                no_data,
            ))?;
        }
        for mask in &plan.masks {
            let null = c"/dev/null".as_ptr();
            check(libc::mount(
                null,
                mask.as_ptr(),
                none,
                libc::MS_BIND,
                no_data,
            ))?;
        }
        read_only(root, &plan.binds)?;
        for private in &plan.private_dirs {
            let flags = libc::MS_NOSUID | libc::MS_NODEV;
            let options = plan.tmpfs_options.as_ptr().cast();
            check(libc::mount(
                plan.tmpfs_name.as_ptr(),
                private.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                options,
            ))?;
        }
        for dir in &plan.job_path {
            libc::mkdir(dir.as_ptr(), 0o711); // again where a private tmpfs now covers it
        }
        // The working directory (set before this runs) is still the real job directory.
        let Some(job) = plan.job_path.last() else {
            return Ok(());
        };
        check(libc::mount(
            c".".as_ptr(),
            job.as_ptr(),
            none,
            libc::MS_BIND,
            no_data,
        ))?;
        let writable = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV;
        check(libc::mount(none, job.as_ptr(), none, writable, no_data))?;
        // pivot_root(".", "."): the old root ends up stacked on the new one and is detached.
        check(libc::chdir(root))?;
        let dot = c".".as_ptr();
        check(libc::syscall(libc::SYS_pivot_root, dot, dot) as libc::c_int)?;
        check(libc::umount2(dot, libc::MNT_DETACH))?;
        check(libc::chdir(plan.job_dir.as_ptr()))?;
    }
    Ok(())
}

/// Makes the new root and everything bound in it read-only: recursively where the kernel
/// has mount_setattr (Linux 5.12), else mount by mount.
///
/// # Safety
/// As [`enter_private_root`]: `root` and the paths in `binds` are NUL-terminated.
unsafe fn read_only(root: *const libc::c_char, binds: &[(CString, CString)]) -> nix::Result<()> {
    let check = |rc: libc::c_int| nix::errno::Errno::result(rc).map(drop);
    let none = std::ptr::null::<libc::c_char>();
    let attributes = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the caller's strings; a struct on the stack.
    unsafe {
        let recursive = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            root,
            AT_RECURSIVE,
            &attributes as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if recursive == 0 {
            return Ok(());
        }
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        for (_, inside) in binds {
            check(libc::mount(
                none,
                inside.as_ptr(),
                none,
                flags,
                std::ptr::null(),
            ))?;
        }
        check(libc::mount(
            none,
            root,
            none,
            libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        ))
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_int = 0x8000;
