//! Grading: from a response to a [`Verdict`] (extracted answer, its normalised form, the
//! rule that decided, and the result). Per SPEC.md's reward table.

pub mod choice;
pub mod code;
pub mod math;
mod math_equiv;
mod math_parse;
pub mod numeric;

use serde::{Deserialize, Serialize};

use crate::problem::Problem;
use crate::sandbox::{Job, Sandbox};

/// How a task's responses are graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraderKind {
    /// The number after the last `####`, else the last number; exact decimals.
    Numeric,
    /// The last `\boxed{}`, MATH normalisation, numeric comparison.
    MathBoxed,
    /// An option letter A-E.
    Choice,
    /// A Python program that must pass the task's asserts in the sandbox.
    Code,
}

/// The grade of one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub correct: bool,
    /// The answer as found in the response; None when none was found.
    pub extracted: Option<String>,
    /// Its normalised form (what was compared).
    pub normalized: Option<String>,
    /// The rule that decided (`after-hashes`, `boxed/numeric-exact`, `answer-is`, `fenced`...).
    pub rule: String,
    /// For code: the sandbox's reason (`pass`, `fail assertion: ...`, `timeout` ...) and
    /// whether the network was isolated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

impl Verdict {
    pub(crate) fn no_answer(rule: &str) -> Verdict {
        Verdict {
            correct: false,
            extracted: None,
            normalized: None,
            rule: rule.to_string(),
            detail: None,
        }
    }
}

/// Grades text responses directly and code responses through a sandbox.
pub struct Grader<'a> {
    kind: GraderKind,
    sandbox: Option<&'a Sandbox>,
}

impl<'a> Grader<'a> {
    /// A grader for `kind`; code grading needs a sandbox.
    pub fn new(kind: GraderKind, sandbox: Option<&'a Sandbox>) -> crate::Result<Self> {
        if kind == GraderKind::Code && sandbox.is_none() {
            return Err(crate::BenchError::Sandbox(
                "code grading needs a sandbox".into(),
            ));
        }
        Ok(Grader { kind, sandbox })
    }

    /// Grades a batch of (problem, response) pairs, code in parallel; `done` is called once
    /// per graded response.
    pub fn grade_all(&self, items: &[(&Problem, &str)], done: &(dyn Fn() + Sync)) -> Vec<Verdict> {
        if self.kind != GraderKind::Code {
            return items
                .iter()
                .map(|(problem, response)| {
                    let verdict = grade_text(self.kind, problem, response);
                    done();
                    verdict
                })
                .collect();
        }
        let mut verdicts: Vec<Option<Verdict>> = vec![None; items.len()];
        let mut jobs = Vec::new();
        let mut job_index = Vec::new();
        for (i, (problem, response)) in items.iter().enumerate() {
            match code_job(problem, response) {
                Ok((job, rule)) => {
                    jobs.push(job);
                    job_index.push((i, rule));
                }
                Err(verdict) => {
                    verdicts[i] = Some(verdict);
                    done();
                }
            }
        }
        let outcomes = match self.sandbox {
            Some(sandbox) => sandbox.run_all(&jobs, done),
            None => Vec::new(), // unreachable: `new` requires a sandbox for code
        };
        for ((i, rule), (job, outcome)) in job_index.into_iter().zip(jobs.into_iter().zip(outcomes))
        {
            verdicts[i] = Some(Verdict {
                correct: outcome.passed,
                extracted: Some(job.code),
                normalized: None,
                rule: rule.to_string(),
                detail: Some(format!(
                    "{} [network {}, files {}]",
                    outcome.reason, outcome.network, outcome.files
                )),
            });
        }
        verdicts.into_iter().map(|v| v.expect("graded")).collect()
    }
}

/// Grades a response of a text task (everything but code).
pub fn grade_text(kind: GraderKind, problem: &Problem, response: &str) -> Verdict {
    match kind {
        GraderKind::Numeric => numeric::grade(response, &problem.answer),
        GraderKind::MathBoxed => math::grade(response, &problem.answer),
        GraderKind::Choice => choice::grade(response, &problem.answer, &problem.meta.choices),
        GraderKind::Code => Verdict::no_answer("code-needs-sandbox"),
    }
}

/// The sandbox job of a code response, or the verdict when it cannot run (no tests, no
/// definition of the tested function).
fn code_job(problem: &Problem, response: &str) -> Result<(Job, &'static str), Verdict> {
    let Some(tests) = &problem.meta.tests else {
        return Err(Verdict::no_answer("no-tests"));
    };
    let (code, rule) = code::extract(response, &tests.entry_point);
    if !code::defines(&code, &tests.entry_point) {
        return Err(Verdict {
            correct: false,
            extracted: Some(code),
            normalized: None,
            rule: "missing-function".into(),
            detail: Some(format!("`{}` is not defined", tests.entry_point)),
        });
    }
    let job = Job {
        code,
        tests: code::test_program(tests),
        entry_point: tests.entry_point.clone(),
    };
    Ok((job, rule))
}
