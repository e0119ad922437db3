//! Backend errors: each names the model file or endpoint and says whether a retry can help.

use std::path::PathBuf;

/// What can go wrong in a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model file could not be loaded.
    #[error("{path}: cannot load model: {message}")]
    Model { path: PathBuf, message: String },
    /// The llama.cpp engine failed (context, decode, template).
    #[error("llama.cpp: {0}")]
    Engine(String),
    /// A prompt does not fit the context window.
    #[error(
        "request {request}: prompt of {tokens} tokens does not fit a context of {context} per sequence"
    )]
    PromptTooLong {
        request: usize,
        tokens: usize,
        context: usize,
    },
    /// An HTTP endpoint failed after the retry budget (`retryable`: the last failure was of
    /// a kind that retrying could fix, such as a 503 or a dropped connection).
    #[error("{url}: {message} (after {attempts} attempt(s))")]
    Http {
        url: String,
        message: String,
        attempts: u32,
        retryable: bool,
    },
    /// The server is up but does not serve the model.
    #[error("{url}: model `{model}` is not served (served: {served})")]
    ModelNotServed {
        url: String,
        model: String,
        served: String,
    },
    /// The backend cannot do what was asked (an adapter file for a server).
    #[error("{0}")]
    Unsupported(String),
    /// The caller's completion handler failed (for example, writing the sample file).
    #[error("{0}")]
    Callback(String),
}

/// Result alias of this crate.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;
