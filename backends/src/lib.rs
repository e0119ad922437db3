//! Inference backends: one `Backend` trait that turns a batch of prompts plus sampling
//! settings into completions, with engines for embedded llama.cpp and any OpenAI-compatible
//! server. (Filled by the backends issue; this crate is the place it lands.)
//!
//! Backends never grade: they know nothing of tasks, answers or rewards.
