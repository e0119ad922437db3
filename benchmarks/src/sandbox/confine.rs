//! Confinement of one sandboxed program, applied in the forked child between fork and exec:
//! session, resource limits, namespaces, a private file system and the `nobody` user. Every
//! function here that runs in the child is async-signal-safe and allocates nothing; what
//! it needs is prepared before fork ([`Limits`], [`MountPlan`]).

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sched::CloneFlags;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, setsid};

use super::root::{MountPlan, enter_private_root};
use super::{NOBODY, REPLY_FD};

#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub(super) cpu: u64,
    pub(super) memory: u64,
    pub(super) processes: u64,
    pub(super) file: u64,
    pub(super) open_files: u64,
}

/// Runs in the child between fork and exec (see the SAFETY note at the call).
/// `reply` is the write end of the reply pipe; the program gets it as descriptor 3.
pub(super) fn confine(
    limits: &Limits,
    mounts: &MountPlan,
    as_root: bool,
    reply: RawFd,
) -> std::io::Result<()> {
    // SAFETY: dup2 and fcntl take integers only. dup2 onto itself keeps FD_CLOEXEC, which
    // is cleared explicitly then.
    unsafe {
        if reply == REPLY_FD {
            libc::fcntl(REPLY_FD, libc::F_SETFD, 0);
        } else if libc::dup2(reply, REPLY_FD) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    setsid()?;
    // Kill this process if the harness thread that started it dies.
    // SAFETY: prctl with PR_SET_PDEATHSIG takes an integer argument only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    setrlimit(Resource::RLIMIT_CPU, limits.cpu, limits.cpu + 1)?;
    setrlimit(Resource::RLIMIT_AS, limits.memory, limits.memory)?;
    setrlimit(Resource::RLIMIT_FSIZE, limits.file, limits.file)?;
    setrlimit(
        Resource::RLIMIT_NOFILE,
        limits.open_files,
        limits.open_files,
    )?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    if as_root {
        // Counted per uid: as `nobody` this counts only sandboxed programs. (An ordinary
        // user's own processes would count too, so the limit is not set for one.)
        setrlimit(Resource::RLIMIT_NPROC, limits.processes, limits.processes)?;
    }
    if enter_namespaces(as_root).is_ok() {
        // Best effort: the runner reports whether the file system is private.
        let _ = enter_private_root(mounts);
        // The caller stays outside the new PID namespace and its first child is PID 1 there.
        // PID 1 only relays: the kernel does not deliver default-action signals such as
        // SIGXCPU to a namespace's init, so the program itself runs as PID 2. When PID 1
        // exits, the kernel kills everything left in the namespace.
        for _ in 0..2 {
            // SAFETY: fork in a single-threaded child before exec.
            if let ForkResult::Parent { child } = unsafe { fork() }? {
                relay(child);
            }
        }
    }
    if as_root {
        nix::unistd::setgroups(&[])?;
        nix::unistd::setgid(Gid::from_raw(NOBODY))?;
        nix::unistd::setuid(Uid::from_raw(NOBODY))?;
    }
    // Changing credentials cleared the death signal: set it again for the program itself.
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    Ok(())
}

/// Waits for `child` and exits with its status (a signal as 128 + its number), holding
/// nothing of the harness: its SIGCHLD handler (wait-timeout's self-pipe, inherited through
/// fork) is reset and every inherited descriptor above stderr (the spawn error pipe) closed.
fn relay(child: Pid) -> ! {
    // SAFETY: signal, close_range (via syscall), waitpid and _exit are async-signal-safe.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    let code = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break 125,
        }
    };
    // SAFETY: _exit skips the harness's atexit handlers, which are not this process's.
    unsafe { libc::_exit(code) }
}

/// Moves the calling process into new PID, network and mount namespaces: directly as root,
/// else through a new user namespace where unprivileged ones are allowed.
fn enter_namespaces(as_root: bool) -> nix::Result<()> {
    let flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS;
    nix::sched::unshare(flags).or_else(|e| match as_root {
        true => Err(e),
        false => nix::sched::unshare(flags | CloneFlags::CLONE_NEWUSER),
    })
}

/// Whether this kernel lets the sandbox make PID and network namespaces (probed once by
/// starting `true` the way programs are started).
pub(super) fn probe_pid_namespace() -> bool {
    static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBE.get_or_init(|| {
        let as_root = Uid::effective().is_root();
        let mut command = Command::new("true");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: unshare is async-signal-safe and nothing is allocated.
        unsafe {
            command.pre_exec(move || enter_namespaces(as_root).map_err(std::io::Error::from));
        }
        command.status().is_ok_and(|s| s.success())
    })
}
