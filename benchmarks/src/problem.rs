//! One benchmark problem, in the shape every task shares.

use serde::Serialize;

/// A problem of a task split: what the model is asked, what counts as right, and the gold
/// solution that SFT trains on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Stable within the task (data file ids where the data has them, else the split and
    /// position in the file, which is pinned by the file's checksum).
    pub id: String,
    /// The question as it goes into the prompt (CSQA includes the lettered options, MBPP the
    /// test asserts that name the function).
    pub question: String,
    /// The gold final answer the grader compares against (for MBPP: the gold code).
    pub answer: String,
    /// The gold solution, used as the SFT target of round 1 and graded by `grade --gold`.
    pub solution: String,
    /// Task-specific metadata.
    pub meta: ProblemMeta,
}

/// Metadata that only some tasks carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProblemMeta {
    /// MATH level 1-5 (None for MATH's two "Level ?" items) or the arith step count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// MATH subject (`type`) or SVAMP problem type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// CSQA options as (letter, text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<(char, String)>,
    /// MBPP tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<CodeTests>,
}

/// What an MBPP program must pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeTests {
    /// `test_setup_code`, run after the program and before the asserts.
    pub setup: String,
    /// The `assert` lines.
    pub asserts: Vec<String>,
    /// The function the asserts call, which the program must define.
    pub entry_point: String,
}
