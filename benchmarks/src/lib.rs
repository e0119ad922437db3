//! Benchmark tasks for the self-improvement-reversal harness: the vendored data sets and the
//! generated `arith` task, zero-shot prompts, answer extraction and grading per SPEC.md, the
//! sandbox that runs model-written Python, and the sample-file format that ties sampling,
//! grading and the reports together.
//!
//! Benchmarks never open a socket and never sample a model: they turn problems into prompts
//! and responses into verdicts.

pub mod arith;
mod data;
mod error;
pub mod grade;
mod problem;
pub mod prompt;
pub mod sample;
pub mod sandbox;
mod task;
pub mod training_data;

pub use data::{DATA_DIR_ENV, DataSource};
pub use error::{BenchError, Result};
pub use grade::{Grader, GraderKind, Verdict};
pub use problem::{CodeTests, Problem, ProblemMeta};
pub use prompt::{Prompt, PromptStyle, Template};
pub use sample::{Sample, Sampling, read_sample_lines, read_samples, write_jsonl, write_samples};
pub use sandbox::{Sandbox, SandboxConfig};
pub use task::{Split, TASKS, Task, task};
