//! Errors of the benchmarks crate. Each one names the place: the data file and line and
//! field, or the sample file and line, so a user can open the file and look.

use std::path::PathBuf;

/// What can go wrong while loading a task or reading a sample file.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A vendored or user-supplied data file does not have the bytes it should.
    #[error(
        "{file}: sha256 is {actual}, expected {expected} (the file is damaged or was replaced)"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    /// A record of a data file is not what the task expects.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Record {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
    /// A line of a sample file is not a valid sample.
    #[error("{file}:{line}: {message}")]
    SampleLine {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An unknown task, split, template or problem id.
    #[error("{0}")]
    NotFound(String),
    /// The code sandbox could not be set up (not: a program failed inside it).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Samples that cannot make a training set (ungraded, no prompt).
    #[error("{0}")]
    Invalid(String),
}

impl BenchError {
    pub(crate) fn record(file: &str, line: usize, field: &str, message: impl Into<String>) -> Self {
        BenchError::Record {
            file: file.to_string(),
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
