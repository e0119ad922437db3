//! Running a user's command (`--serve-hook`, `--train-cmd`): `sh -c CMD` with the round's
//! settings in environment variables, its output appended to a log file (a server the hook
//! starts in the background keeps writing there, and holds none of our pipes), and on
//! failure its exit status plus the log's last lines.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Lines of a failed command's output quoted in the error.
const TAIL_LINES: usize = 20;

/// Runs `cmd` with `envs`, appending its stdout and stderr to `log`; fails when it exits
/// non-zero or runs past `timeout`. `what` names the command in messages.
pub fn run_logged(
    what: &str,
    cmd: &str,
    envs: &[(String, String)],
    log: &Path,
    timeout: Option<Duration>,
) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let start_of_run = file.metadata()?.len();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {what} `{cmd}`"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} `{cmd}` ran past {:.0} s and was stopped; its output ({}):\n{}",
                timeout.unwrap_or_default().as_secs_f64(),
                log.display(),
                tail(log, start_of_run)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        bail!(
            "{what} `{cmd}` failed ({status}); the end of its output ({}):\n{}",
            log.display(),
            tail(log, start_of_run)
        );
    }
    Ok(())
}

/// The last lines written to `log` since byte `from`.
fn tail(log: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.seek(SeekFrom::Start(from));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_quotes_status_and_the_runs_own_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "an earlier run\n").unwrap();
        let envs = vec![("HARNESS_X".to_string(), "41".to_string())];
        run_logged("hook", "echo value $HARNESS_X", &envs, &log, None).unwrap();
        let err = run_logged("hook", "echo to stderr >&2; exit 3", &envs, &log, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("| to stderr"), "{err}");
        assert!(!err.contains("an earlier run"), "{err}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("value 41"), "{text}");
        let err = run_logged(
            "hook",
            "sleep 5",
            &envs,
            &log,
            Some(Duration::from_millis(200)),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ran past"), "{err}");
    }
}
