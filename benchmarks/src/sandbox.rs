//! The sandbox that runs model-written Python. Model output is hostile until proven
//! otherwise: it never runs in the harness process, and each program gets
//!
//! - its own `python3 -I -S -B` process, in a fresh directory that is its cwd and HOME, with
//!   an empty environment, stdin closed, stdout/stderr to files capped by RLIMIT_FSIZE;
//! - its own session and process group (setsid), resource limits (address space, CPU
//!   seconds, processes, file size, open files, no core files);
//! - where the kernel allows it (root, or unprivileged user namespaces), new PID and network
//!   namespaces: the program is PID 1 of its namespace, so when it ends, or is killed on
//!   timeout, every process it left behind (even a `setsid` daemon) dies with it, and it
//!   sees only an unconfigured loopback device;
//! - with those namespaces, a private mount namespace: the whole file system read-only except
//!   its own directory, and its own empty tmpfs on `/tmp`, `/var/tmp` and `/dev/shm`, so
//!   nothing it writes there outlives it or is seen by another program;
//! - when the harness runs as root, the uid and gid of `nobody`, so it cannot write outside
//!   its directory (the parent is root's, mode 0711), read other processes' environments or
//!   signal the harness, and RLIMIT_NPROC, which root ignores, applies.
//!
//! The verdict comes from a result line that the runner writes, prefixed by a nonce the
//! program cannot read (see `sandbox_runner.py`); exiting early is never a pass.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, setsid};
use wait_timeout::ChildExt;

use crate::error::{BenchError, Result};

const RUNNER: &str = include_str!("sandbox_runner.py");
/// The interpreter, looked up in the system directories first: an interpreter under a
/// user's home (pyenv) is usually not reachable by `nobody`.
const PYTHON: &str = "python3";
const SYSTEM_BIN_DIRS: [&str; 3] = ["/usr/bin", "/usr/local/bin", "/bin"];
/// uid and gid the programs run as when the harness is root (`nobody` on Debian).
const NOBODY: u32 = 65534;
/// World-writable directories each program gets as its own empty tmpfs.
const PRIVATE_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];
/// The source name of those tmpfs mounts, by which the runner recognises them.
const TMPFS_NAME: &str = "harness-sandbox";

/// Limits of one sandboxed program.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The Python interpreter.
    pub python: PathBuf,
    /// Wall-clock limit; the whole process group is killed after it.
    pub timeout: Duration,
    /// RLIMIT_CPU.
    pub cpu_seconds: u64,
    /// RLIMIT_AS.
    pub memory_bytes: u64,
    /// RLIMIT_NPROC (per uid: shared by programs running at the same time).
    pub max_processes: u64,
    /// RLIMIT_FSIZE: the largest file, stdout and stderr included.
    pub max_file_bytes: u64,
    /// RLIMIT_NOFILE.
    pub max_open_files: u64,
    /// How much of stdout and stderr is kept in the outcome.
    pub output_bytes: usize,
    /// Programs run at the same time.
    pub parallel: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            python: PathBuf::from(PYTHON),
            timeout: Duration::from_secs(10),
            cpu_seconds: 10,
            memory_bytes: 1 << 30,
            max_processes: 64,
            max_file_bytes: 16 << 20,
            max_open_files: 64,
            output_bytes: 16 << 10,
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What happened to one program.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// True only when every test assert ran and held.
    pub passed: bool,
    /// Why: `pass`, `fail assertion: ...`, `timeout`, `cpu-limit`, `file-size-limit`, ...
    pub reason: String,
    /// Whether the program had no network: `isolated`, `shared`, or `unknown` when it
    /// never reported.
    pub network: String,
    /// Whether leftover processes were contained by a PID namespace.
    pub pid_namespace: bool,
    /// Whether the program had its own `/tmp`, `/var/tmp`, `/dev/shm` and a read-only file
    /// system elsewhere: `private`, `shared`, or `unknown` when it never reported.
    pub files: String,
    /// The first bytes of stdout and stderr.
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
}

/// One program to run: candidate code, the test program that follows it, and the function
/// the tests call.
#[derive(Debug, Clone)]
pub struct Job {
    pub code: String,
    pub tests: String,
    pub entry_point: String,
}

/// A directory of per-program directories plus the limits.
pub struct Sandbox {
    config: SandboxConfig,
    root: tempfile::TempDir,
    as_root: bool,
    counter: AtomicUsize,
}

impl Sandbox {
    /// Creates the sandbox's root directory (removed with the sandbox), finds the
    /// interpreter, and checks with a trivial program that programs can run at all.
    pub fn new(mut config: SandboxConfig) -> Result<Self> {
        config.python = resolve_interpreter(&config.python)?;
        let root = tempfile::Builder::new()
            .prefix("harness-sandbox-")
            .tempdir()
            .map_err(|e| BenchError::Sandbox(format!("cannot create a directory: {e}")))?;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711))
            .map_err(|e| BenchError::io(root.path(), e))?;
        let sandbox = Sandbox {
            config,
            root,
            as_root: Uid::effective().is_root(),
            counter: AtomicUsize::new(0),
        };
        let check = sandbox.run(&Job {
            code: "def f():\n    return 1\n".into(),
            tests: "assert f() == 1\n".into(),
            entry_point: "f".into(),
        });
        if !check.passed {
            return Err(BenchError::Sandbox(format!(
                "a trivial program did not pass with {}: {} {}",
                sandbox.config.python.display(),
                check.reason,
                check.stderr.trim()
            )));
        }
        Ok(sandbox)
    }

    /// The interpreter programs run with.
    pub fn python(&self) -> &Path {
        &self.config.python
    }

    /// The directory that holds the per-program directories.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Runs many programs, `parallel` at a time; `done` is called after each.
    pub fn run_all(&self, jobs: &[Job], done: &(dyn Fn() + Sync)) -> Vec<Outcome> {
        let next = AtomicUsize::new(0);
        let workers = self.config.parallel.max(1).min(jobs.len().max(1));
        // Each worker takes the next job and keeps (index, outcome); merged in job order.
        let mut finished: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(job) = jobs.get(i) else { break mine };
                            mine.push((i, self.run(job)));
                            done();
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("sandbox worker panicked"))
                .collect()
        });
        finished.sort_by_key(|(i, _)| *i);
        finished.into_iter().map(|(_, o)| o).collect()
    }

    /// Runs one program. Failures of the program are outcomes; failures to set up the
    /// sandbox (no python3, no disk) are outcomes too, with the reason, so a batch goes on.
    pub fn run(&self, job: &Job) -> Outcome {
        let started = Instant::now();
        match self.try_run(job) {
            Ok(mut outcome) => {
                outcome.wall = started.elapsed();
                outcome
            }
            Err(e) => Outcome {
                passed: false,
                reason: format!("sandbox-error: {e}"),
                network: "unknown".into(),
                pid_namespace: false,
                files: "unknown".into(),
                stdout: String::new(),
                stderr: String::new(),
                wall: started.elapsed(),
            },
        }
    }

    fn try_run(&self, job: &Job) -> Result<Outcome> {
        let id = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.path().join(format!("job-{id}"));
        let io = |e| BenchError::io(&dir, e);
        std::fs::create_dir(&dir).map_err(io)?;
        let nonce = nonce();
        let runner = RUNNER
            .replace("NONCE_PLACEHOLDER", &nonce)
            .replace("PRIVATE_DIRS_PLACEHOLDER", &PRIVATE_DIRS.join(":"))
            .replace("TMPFS_NAME_PLACEHOLDER", TMPFS_NAME)
            .replace("ENTRY_POINT_PLACEHOLDER", &job.entry_point);
        std::fs::write(dir.join("runner.py"), runner).map_err(io)?;
        std::fs::write(dir.join("candidate.py"), &job.code).map_err(io)?;
        std::fs::write(dir.join("tests.py"), &job.tests).map_err(io)?;
        let mut stdout = output_file(&dir.join(".stdout"))?;
        let mut stderr = output_file(&dir.join(".stderr"))?;
        if self.as_root {
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).map_err(io)?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;

        let mut command = Command::new(&self.config.python);
        command
            .args(["-I", "-S", "-B", "runner.py"])
            .current_dir(&dir)
            .env_clear()
            .env("HOME", &dir)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().map_err(io)?)
            .stderr(stderr.try_clone().map_err(io)?);
        let limits = self.limits();
        let mounts = MountPlan::new(&dir, self.config.max_file_bytes)?;
        let as_root = self.as_root;
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (setsid, setrlimit, unshare, fork, waitpid, close,
        // setgroups/setgid/setuid, _exit); it allocates nothing.
        unsafe {
            command.pre_exec(move || confine(&limits, &mounts, as_root));
        }
        let mut child = command.spawn().map_err(|e| {
            BenchError::Sandbox(format!(
                "cannot start {}: {e}",
                self.config.python.display()
            ))
        })?;
        let pgid = Pid::from_raw(child.id() as i32);
        let status = child.wait_timeout(self.config.timeout).map_err(io)?;
        // Whatever happened, nothing of this program outlives this call.
        let _ = killpg(pgid, Signal::SIGKILL);
        let status = match status {
            Some(status) => Some(status),
            None => {
                let _ = child.wait();
                None
            }
        };
        let result = std::fs::read_to_string(dir.join(".result")).unwrap_or_default();
        let limit = self.config.output_bytes;
        let mut outcome = Outcome {
            passed: false,
            reason: String::new(),
            network: "unknown".into(),
            pid_namespace: probe_pid_namespace(),
            files: "unknown".into(),
            stdout: read_head(&mut stdout, limit),
            stderr: read_head(&mut stderr, limit),
            wall: Duration::ZERO,
        };
        match result.strip_prefix(&nonce).map(str::trim) {
            Some(report) => {
                let mut fields = report.splitn(3, ' ');
                let (network, files) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
                let status = fields.next().unwrap_or("");
                outcome.network = network.to_string();
                outcome.files = files.to_string();
                outcome.passed = status == "pass";
                outcome.reason = status.to_string();
            }
            None => outcome.reason = why_no_report(status, &outcome.stderr),
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(outcome)
    }

    fn limits(&self) -> Limits {
        Limits {
            cpu: self.config.cpu_seconds,
            memory: self.config.memory_bytes,
            processes: self.config.max_processes,
            file: self.config.max_file_bytes,
            open_files: self.config.max_open_files,
        }
    }
}

#[derive(Clone, Copy)]
struct Limits {
    cpu: u64,
    memory: u64,
    processes: u64,
    file: u64,
    open_files: u64,
}

/// What a program's mount namespace gets, prepared before fork: nothing may be allocated
/// between fork and exec.
struct MountPlan {
    /// The job directory and its ancestors below `/`, outermost first.
    job_path: Vec<CString>,
    private_dirs: Vec<CString>,
    tmpfs_name: CString,
    tmpfs_options: CString,
}

impl MountPlan {
    fn new(job_dir: &Path, size: u64) -> Result<Self> {
        let c = |s: &str| {
            CString::new(s).map_err(|_| BenchError::Sandbox(format!("a NUL in path {s:?}")))
        };
        let mut job_path: Vec<CString> = job_dir
            .ancestors()
            .filter(|p| p.parent().is_some())
            .map(|p| c(&p.to_string_lossy()))
            .collect::<Result<_>>()?;
        job_path.reverse();
        Ok(MountPlan {
            job_path,
            private_dirs: PRIVATE_DIRS
                .iter()
                .filter(|d| Path::new(d).is_dir())
                .map(|d| c(d))
                .collect::<Result<_>>()?,
            tmpfs_name: c(TMPFS_NAME)?,
            tmpfs_options: c(&format!("size={size},mode=1777"))?,
        })
    }
}

/// In the program's new mount namespace (made private first, so nothing reaches the host):
/// everything read-only, a fresh tmpfs on each private directory, and the program's own
/// directory bound, writable, at its usual path (recreated inside the new `/tmp`).
fn private_file_system(plan: &MountPlan) -> nix::Result<()> {
    let check = |rc: libc::c_int| nix::errno::Errno::result(rc).map(drop);
    let none = std::ptr::null::<libc::c_char>();
    let root = c"/".as_ptr();
    // SAFETY: mount, mkdir, chdir and the mount_setattr syscall take NUL-terminated strings
    // that live in `plan` (made before fork) or are static, and a struct on the stack.
    unsafe {
        check(libc::mount(
            none,
            root,
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        let read_only = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let recursive = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            root,
            AT_RECURSIVE,
            &read_only as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if recursive != 0 {
            // Before Linux 5.12: the root mount alone.
            let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
            check(libc::mount(none, root, none, flags, std::ptr::null()))?;
        }
        for private in &plan.private_dirs {
            check(libc::mount(
                plan.tmpfs_name.as_ptr(),
                private.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                plan.tmpfs_options.as_ptr().cast(),
            ))?;
        }
        for dir in &plan.job_path {
            libc::mkdir(dir.as_ptr(), 0o711); // exists already unless under a new tmpfs
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
            std::ptr::null(),
        ))?;
        let writable = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV;
        check(libc::mount(
            none,
            job.as_ptr(),
            none,
            writable,
            std::ptr::null(),
        ))?;
        check(libc::chdir(job.as_ptr()))?;
    }
    Ok(())
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

/// Runs in the child between fork and exec (see the SAFETY note at the call).
fn confine(limits: &Limits, mounts: &MountPlan, as_root: bool) -> std::io::Result<()> {
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
        let _ = private_file_system(mounts);
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

/// An absolute interpreter path: a bare name is looked up in the system directories, then
/// in PATH.
fn resolve_interpreter(python: &Path) -> Result<PathBuf> {
    if python.components().count() > 1 {
        return Ok(python.to_path_buf());
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    SYSTEM_BIN_DIRS
        .iter()
        .map(PathBuf::from)
        .chain(path_dirs)
        .map(|dir| dir.join(python))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            BenchError::Sandbox(format!(
                "no `{}` found in {} or PATH: MBPP grading needs Python 3 (apt-get install python3)",
                python.display(),
                SYSTEM_BIN_DIRS.join(", ")
            ))
        })
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
fn probe_pid_namespace() -> bool {
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

/// Why a program left no result line.
fn why_no_report(status: Option<std::process::ExitStatus>, stderr: &str) -> String {
    let Some(status) = status else {
        return "timeout: killed after the wall-clock limit".into();
    };
    // The PID-namespace parent reports a signal as 128 + its number.
    let signal = status
        .signal()
        .or_else(|| status.code().filter(|c| *c > 128).map(|c| c - 128));
    match signal {
        Some(s) if s == libc::SIGXCPU => "cpu-limit: killed after the CPU-time limit".into(),
        Some(s) if s == libc::SIGXFSZ => "file-size-limit: wrote past the file size limit".into(),
        Some(s) if s == libc::SIGKILL => "killed: SIGKILL (memory or the harness)".into(),
        Some(s) => format!("killed: signal {s}"),
        None if stderr.contains("MemoryError") => "memory-limit: MemoryError".into(),
        None => format!(
            "no-result: exited with code {} before the tests finished",
            status.code().unwrap_or(-1)
        ),
    }
}

fn output_file(path: &Path) -> Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| BenchError::io(path, e))
}

fn read_head(file: &mut File, limit: usize) -> String {
    let mut buffer = Vec::new();
    if file.seek(SeekFrom::Start(0)).is_ok() {
        let _ = file.take(limit as u64).read_to_end(&mut buffer);
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

/// 128 random bits from the kernel, hex-encoded.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut urandom) = File::open("/dev/urandom") {
        let _ = urandom.read_exact(&mut bytes);
    }
    hex::encode(bytes)
}
