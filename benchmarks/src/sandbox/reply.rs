//! The program's reply: a pipe it holds as descriptor 3, read while the harness waits for the
//! program to end. A pipe, not a file: what the runner wrote before the candidate's code ran
//! (its probe of the network and file system) cannot be rewritten afterwards, and nothing
//! is left on disk.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use wait_timeout::ChildExt;

/// The pipe's two ends: `write` goes to the program, `read` stays here (both close on exec).
pub(super) struct ReplyPipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

impl ReplyPipe {
    /// A pipe whose buffer holds `limit` bytes where the kernel allows it, so a program
    /// within the limit never waits on the harness to write its reply.
    pub fn new(limit: usize) -> std::io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let size = i32::try_from(limit).unwrap_or(i32::MAX);
        let _ = fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size));
        fcntl(read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(ReplyPipe { read, write })
    }
}

/// What came back from one program.
pub(super) struct Collected {
    /// None when the program was still running at the deadline.
    pub status: Option<ExitStatus>,
    pub reply: Vec<u8>,
    /// The reply passed the limit (the program was stopped there).
    pub oversized: bool,
}

/// Waits up to `timeout` for `child` while reading `read` (at most `limit` bytes). Returns
/// at the child's exit, at the deadline, or as soon as the reply passes the limit; the
/// caller kills what is left.
pub(super) fn collect(
    child: &mut Child,
    read: OwnedFd,
    timeout: Duration,
    limit: usize,
) -> std::io::Result<Collected> {
    let deadline = Instant::now() + timeout;
    let mut pipe = File::from(read);
    let mut reply = Vec::new();
    let mut open = true;
    let status = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if !open {
            // Every writer closed the pipe (the program exited, or closed descriptor 3):
            // nothing more to read, only the exit to wait for.
            break child.wait_timeout(left)?;
        }
        let wait = left.min(Duration::from_millis(100));
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        open = drain(&mut pipe, &mut reply, limit)?;
        if reply.len() > limit {
            return Ok(Collected {
                status: None,
                reply,
                oversized: true,
            });
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if left.is_zero() {
            break None;
        }
    };
    // Whatever the program wrote before it ended is still in the pipe.
    drain(&mut pipe, &mut reply, limit)?;
    let oversized = reply.len() > limit;
    Ok(Collected {
        status,
        reply,
        oversized,
    })
}

/// Reads what the pipe holds now, up to one byte past `limit`; false once every writer has
/// closed it.
fn drain(pipe: &mut File, reply: &mut Vec<u8>, limit: usize) -> std::io::Result<bool> {
    let mut buffer = [0u8; 64 << 10];
    while reply.len() <= limit {
        match pipe.read(&mut buffer) {
            Ok(0) => return Ok(false),
            Ok(n) => reply.extend_from_slice(&buffer[..n.min(limit + 1 - reply.len())]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
