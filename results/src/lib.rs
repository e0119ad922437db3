//! Metrics and reports: pass@k, the improvement set, coverage, diversity and
//! out-of-distribution measures of SPEC.md, computed from stored sample files alone.
//!
//! Results never sample or train: every number is recomputable from the sample files.

mod diversity;
mod pass_at_k;
mod rounds;

pub use diversity::{distinct_equations, distinct_n, equations};
pub use pass_at_k::{pass_at_k, pass_at_k_levels};
pub use rounds::{Coverage, coverage, improvement_set};
