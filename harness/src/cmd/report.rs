//! `harness report RUN_DIR`: recomputes every metric of a run from its sample files and
//! rewrites metrics.csv, rounds.csv, improvement_set.csv, coverage.csv and the plots.

use anyhow::Result;

use crate::cli::ReportArgs;
use crate::reports::{ReportOptions, ReportSettings, report_run};
use crate::run_dir::read_manifest;
use crate::study;

pub fn run(args: ReportArgs) -> Result<()> {
    let recorded = ReportSettings::recorded(&args.run_dir)?;
    let settings = ReportSettings {
        bootstrap: args
            .bootstrap
            .or(recorded.map(|r| r.bootstrap))
            .unwrap_or(1000),
        bootstrap_seed: recorded.map_or(0, |r| r.bootstrap_seed),
    };
    let options = ReportOptions {
        regrade: args.regrade,
        semantic: !args.no_semantic,
        bootstrap: settings.bootstrap(),
        sandbox: &args.sandbox,
        data: &args.data,
    };
    // A loop directory (`harness run`) gets one report per method.
    let measures = match read_manifest(&args.run_dir)?["command"] == "run" {
        true => study::report_loop(&args.run_dir, &options)?,
        false => report_run(&args.run_dir, &options)?,
    };
    settings.record(&args.run_dir)?;
    println!(
        "{}: {} metric values, {} coverage rows, {} improvement-set rows; wrote metrics.csv, rounds.csv, improvement_set.csv, coverage.csv and plots",
        args.run_dir.display(),
        measures.metrics.len(),
        measures.coverage.len(),
        measures.improvement.len()
    );
    Ok(())
}
