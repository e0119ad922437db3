//! Metrics and reports: pass@k, the improvement set, coverage, diversity and
//! out-of-distribution measures of SPEC.md, computed from stored sample files alone, written
//! as CSV and drawn as plots.
//!
//! Results never sample or train: every number is recomputable from the sample files.

mod bert;
mod changes;
mod compare;
mod diversity;
mod measure;
mod metric;
mod pass_at_k;
mod plots;
mod report;
mod rounds;
mod sbert;
mod semantic;
pub mod stats;
mod summary;

pub use changes::{ChangeRow, method_changes, round_changes, write_changes};
pub use compare::{Agreement, Compared, RunMeasures, compare, write_compare};
pub use diversity::{distinct_equations, distinct_n, equations};
pub use measure::{
    CoverageRow, EQUATION_TASKS, ImprovementRow, Measures, MetricRow, ProblemGroups, SampleSet,
    measure,
};
pub use metric::Metric;
pub use pass_at_k::{mean_pass_at_k, pass_at_k, pass_at_k_levels};
pub use plots::plot_run;
pub use report::{RunInfo, read_metrics, write_reports};
pub use rounds::{Coverage, coverage, improvement_set};
pub use sbert::{MAX_TOKENS, MODEL_FILES, SentenceEncoder};
pub use semantic::{Embedder, semantic_diversity};
pub use stats::Bootstrap;
pub use summary::{SummaryRow, summarize, write_summary};
