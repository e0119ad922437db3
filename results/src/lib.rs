//! Metrics and reports: pass@k, the improvement set, coverage, diversity and
//! out-of-distribution measures of SPEC.md, computed from stored sample files alone, written
//! as CSV and plots. (Filled by the metrics issue; this crate is the place it lands.)
//!
//! Results never sample or train: every number is recomputable from the sample files.
