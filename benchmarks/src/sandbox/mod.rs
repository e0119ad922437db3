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
//! - with those namespaces, a private mount namespace and a root of its own ([`root`]): the
//!   system's directories read-only, its own directory writable, its own empty tmpfs on
//!   `/tmp`, `/var/tmp` and `/dev/shm`, and nothing else of the host (not the data sets), so
//!   nothing it writes outlives it or is seen by another program;
//! - when the harness runs as root, the uid and gid of `nobody`, so it cannot write outside
//!   its directory (the parent is root's, mode 0711), read other processes' environments or
//!   signal the harness, and RLIMIT_NPROC, which root ignores, applies.
//!
//! The verdict is decided elsewhere, by design rather than by hiding a secret: inside one
//! interpreter nothing can be hidden from code that runs there (frames, `gc`, `ctypes`). The
//! program's process (`runner.py`) only evaluates the calls of the asserts (`f(3, 4)`) and
//! writes their results as plain data to a pipe; the judge (`judge.py`, see [`judge`]), a
//! process outside the sandbox that never runs candidate code, holds the expected values,
//! rebuilds the results from built-in types and evaluates the asserts. A program can lie
//! about its results, but it cannot know what to lie, and exiting early, crashing,
//! timing out, or a malformed or oversized reply are each a named failure.

mod confine;
mod judge;
mod reply;
mod root;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, Uid};

use crate::error::{BenchError, Result};
use confine::{Limits, confine, probe_pid_namespace};
use judge::{Decision, Judge, Plan};
use reply::{Collected, ReplyPipe};
use root::MountPlan;

const RUNNER: &str = include_str!("runner.py");
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
/// The descriptor the program writes its reply to.
const REPLY_FD: i32 = 3;

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
    /// The largest reply (the encoded results of the calls); a larger one fails.
    pub reply_bytes: usize,
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
            reply_bytes: 1 << 20,
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

impl Outcome {
    /// The outcome of a program that did not run (tests that cannot be split, a sandbox
    /// that could not be set up).
    fn unrun(reason: String) -> Self {
        Outcome {
            passed: false,
            reason,
            network: "unknown".into(),
            pid_namespace: false,
            files: "unknown".into(),
            stdout: String::new(),
            stderr: String::new(),
            wall: Duration::ZERO,
        }
    }
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
    judge: Judge,
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
            root,
            as_root: Uid::effective().is_root(),
            counter: AtomicUsize::new(0),
            judge: Judge::new(&config.python),
            config,
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
                wall: started.elapsed(),
                ..Outcome::unrun(format!("sandbox-error: {e}"))
            },
        }
    }

    fn try_run(&self, job: &Job) -> Result<Outcome> {
        let plan = match self.judge.plan(&job.tests, &job.entry_point) {
            Ok(plan) => plan,
            Err(reason) => return Ok(Outcome::unrun(reason)),
        };
        let id = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.path().join(format!("job-{id}"));
        let new_root = self.root.path().join(format!("job-{id}.root"));
        let outcome = self.run_in(&dir, &new_root, job, &plan);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir(&new_root);
        outcome
    }

    /// Runs the candidate's side in `dir` (its file system built on the empty `new_root`)
    /// and asks the judge for the verdict.
    fn run_in(&self, dir: &Path, new_root: &Path, job: &Job, plan: &Plan) -> Result<Outcome> {
        let io = |e| BenchError::io(dir, e);
        std::fs::create_dir(dir).map_err(io)?;
        std::fs::create_dir(new_root).map_err(|e| BenchError::io(new_root, e))?;
        let runner_job = serde_json::json!({
            "entry_point": job.entry_point,
            "setup": plan.setup,
            "calls": plan.calls,
            "private_dirs": PRIVATE_DIRS,
            "tmpfs_name": TMPFS_NAME,
            "reply_limit": self.config.reply_bytes,
        });
        std::fs::write(dir.join("runner.py"), RUNNER).map_err(io)?;
        std::fs::write(dir.join("program.py"), &job.code).map_err(io)?;
        std::fs::write(dir.join("job.json"), runner_job.to_string()).map_err(io)?;
        let mut stdout = output_file(&dir.join(".stdout"))?;
        let mut stderr = output_file(&dir.join(".stderr"))?;
        if self.as_root {
            std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).map_err(io)?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;

        let mut command = Command::new(&self.config.python);
        command
            .args(["-I", "-S", "-B", "runner.py"])
            .current_dir(dir)
            .env_clear()
            .env("HOME", dir)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().map_err(io)?)
            .stderr(stderr.try_clone().map_err(io)?);
        let pipe = ReplyPipe::new(self.config.reply_bytes).map_err(io)?;
        let (limits, as_root) = (self.limits(), self.as_root);
        let mounts = MountPlan::new(
            dir,
            new_root,
            &self.config.python,
            self.config.max_file_bytes,
        )?;
        let reply_fd = pipe.write.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (dup2, fcntl, setsid, setrlimit, unshare, mount, fork,
        // waitpid, close, setgroups/setgid/setuid, _exit); it allocates nothing.
        unsafe {
            command.pre_exec(move || confine(&limits, &mounts, as_root, reply_fd));
        }
        let mut child = command.spawn().map_err(|e| {
            BenchError::Sandbox(format!(
                "cannot start {}: {e}",
                self.config.python.display()
            ))
        })?;
        drop(pipe.write);
        let pgid = Pid::from_raw(child.id() as i32);
        let collected = reply::collect(
            &mut child,
            pipe.read,
            self.config.timeout,
            self.config.reply_bytes,
        );
        // Whatever happened, nothing of this program outlives this call.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        let collected = collected.map_err(io)?;
        let limit = self.config.output_bytes;
        let (stdout, stderr) = (read_head(&mut stdout, limit), read_head(&mut stderr, limit));
        let decision = self.decide(job, &collected, &stderr);
        Ok(Outcome {
            passed: decision.passed,
            reason: decision.reason,
            network: decision.network,
            pid_namespace: probe_pid_namespace(),
            files: decision.files,
            stdout,
            stderr,
            wall: Duration::ZERO,
        })
    }

    /// The judge's verdict on what came back; a reply past the limit fails without it.
    fn decide(&self, job: &Job, collected: &Collected, stderr: &str) -> Decision {
        if collected.oversized {
            return Decision {
                passed: false,
                reason: format!(
                    "fail reply-too-large: the results passed {} bytes",
                    self.config.reply_bytes
                ),
                network: "unknown".into(),
                files: "unknown".into(),
            };
        }
        let clean = collected.status.is_some_and(|s| s.code() == Some(0));
        self.judge.decide(
            &job.tests,
            &job.entry_point,
            &String::from_utf8_lossy(&collected.reply),
            clean,
            &why_no_report(collected.status, stderr),
        )
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
