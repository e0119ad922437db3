//! The judge: the trusted Python process that splits a test program into the calls the
//! candidate's process evaluates and decides each verdict from the values it claims
//! (`judge.py`). It runs outside the sandbox, never runs candidate code, and holds the
//! expected values, which never reach the sandbox. One judge serves a [`super::Sandbox`];
//! requests are small JSON lines, so the programs running in parallel take turns at it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

const JUDGE: &str = include_str!("judge.py");

/// What the candidate's process is given: setup code and the calls, in order.
#[derive(Debug, Deserialize)]
pub(super) struct Plan {
    pub setup: String,
    pub calls: Vec<String>,
}

/// The judge's decision on one program.
#[derive(Debug, Deserialize)]
pub(super) struct Decision {
    pub passed: bool,
    pub reason: String,
    pub network: String,
    pub files: String,
}

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request<'a> {
    Plan {
        tests: &'a str,
        entry_point: &'a str,
    },
    Judge {
        tests: &'a str,
        entry_point: &'a str,
        reply: &'a str,
        /// The program exited by itself with status 0.
        exit_clean: bool,
        /// The verdict if the reply stops early or the exit was not clean.
        exit_reason: &'a str,
    },
}

#[derive(Deserialize)]
struct PlanAnswer {
    ok: bool,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    setup: String,
    #[serde(default)]
    calls: Vec<String>,
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) struct Judge {
    python: PathBuf,
    process: Mutex<Option<Process>>,
}

impl Judge {
    /// A judge run by `python`, started at the first request (and again after a crash).
    pub fn new(python: &Path) -> Self {
        Judge {
            python: python.to_path_buf(),
            process: Mutex::new(None),
        }
    }

    /// The calls and setup code of `tests`, or why the tests cannot be split (a reason
    /// starting with `error-in-tests`, or `judge-error`).
    pub fn plan(&self, tests: &str, entry_point: &str) -> Result<Plan, String> {
        let answer: PlanAnswer = self.ask(&Request::Plan { tests, entry_point })?;
        match answer.ok {
            true => Ok(Plan {
                setup: answer.setup,
                calls: answer.calls,
            }),
            false => Err(answer.reason),
        }
    }

    /// The verdict on a program's reply.
    pub fn decide(
        &self,
        tests: &str,
        entry_point: &str,
        reply: &str,
        exit_clean: bool,
        exit_reason: &str,
    ) -> Decision {
        let request = Request::Judge {
            tests,
            entry_point,
            reply,
            exit_clean,
            exit_reason,
        };
        self.ask(&request).unwrap_or_else(|reason| Decision {
            passed: false,
            reason,
            network: "unknown".into(),
            files: "unknown".into(),
        })
    }

    /// One request and its answer; a judge that fails is dropped (killed) and restarted at
    /// the next request.
    fn ask<T: for<'de> Deserialize<'de>>(&self, request: &Request) -> Result<T, String> {
        let mut slot = self.process.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.start().map_err(|e| format!("judge-error: {e}"))?);
        }
        let process = slot.as_mut().expect("started above");
        let answer = exchange(process, request);
        if answer.is_err() {
            *slot = None;
        }
        answer.map_err(|e| format!("judge-error: {e}"))
    }

    fn start(&self) -> std::io::Result<Process> {
        let mut child = Command::new(&self.python)
            .args(["-I", "-S", "-B", "-c", JUDGE])
            .env_clear()
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Process {
            child,
            stdin,
            stdout,
        })
    }
}

fn exchange<T: for<'de> Deserialize<'de>>(
    process: &mut Process,
    request: &Request,
) -> std::io::Result<T> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    process.stdin.write_all(&line)?;
    process.stdin.flush()?;
    let mut answer = String::new();
    if process.stdout.read_line(&mut answer)? == 0 {
        return Err(std::io::Error::other("the judge exited"));
    }
    Ok(serde_json::from_str(&answer)?)
}
