//! The loop's reports: after each round, a method's CSVs, plots and `deltas.csv` (each round
//! against M1 and round t-1) and its table; at the top of the directory, `summary.csv` and
//! `methods_deltas.csv`; and `harness report` on a loop directory, from its files.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::dir::{LoopDir, LoopSettings, read_settings};
use super::flags::LoopMethod;
use super::setup::{Loop, report_settings};
use super::table;
use crate::reports::{ReportOptions, report_files};
use crate::run_dir::dir_name;

impl Loop<'_> {
    /// Rewrites a method's reports for its rounds up to `round` and prints its table.
    pub(super) fn report(&mut self, method: LoopMethod, round: u32) -> Result<()> {
        let started = Instant::now();
        let options = ReportOptions {
            regrade: false,
            semantic: !self.args.no_semantic,
            bootstrap: report_settings(self.args).bootstrap(),
            sandbox: &self.args.sandbox,
            data: &self.args.data,
        };
        let (measures, changes) =
            report_method(&self.dir, &self.settings, method, round, &options)?;
        table::print(method, &self.settings, &measures, &changes);
        self.measures.retain(|(m, _)| *m != method);
        self.measures.push((method, measures));
        compare_methods(&self.dir, &self.settings, &self.measures, options.bootstrap)?;
        self.phases.reporting += started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Measures a method's rounds up to `last`, writes its reports and `deltas.csv`.
fn report_method(
    dir: &LoopDir,
    settings: &LoopSettings,
    method: LoopMethod,
    last: u32,
    options: &ReportOptions,
) -> Result<(results::Measures, Vec<results::ChangeRow>)> {
    let files = dir.method_files(method, last)?;
    let out = dir.reports(method);
    std::fs::create_dir_all(&out)?;
    let value = serde_json::json!({
        "backend": settings.backend,
        "model": settings.model,
        "arith_seed": settings.arith_seed,
    });
    let measures = report_files(&out, &files, &value, method.name(), dir.root(), options)?;
    let changes = results::round_changes(method.name(), &measures, options.bootstrap);
    results::write_changes(&out, "deltas.csv", &dir_name(dir.root()), &changes)?;
    Ok((measures, changes))
}

/// The reports at the top of the loop directory: `summary.csv` and its figure (every
/// method per round, best rounds marked) and `methods_deltas.csv` (every pair of methods at
/// each round from 2 on, the later-listed method against the earlier).
fn compare_methods(
    dir: &LoopDir,
    settings: &LoopSettings,
    measures: &[(LoopMethod, results::Measures)],
    bootstrap: results::Bootstrap,
) -> Result<()> {
    let named: Vec<(&str, &results::Measures)> =
        measures.iter().map(|(m, x)| (m.name(), x)).collect();
    let eval = (settings.eval.task.as_str(), settings.eval.split.as_str());
    let ood: Vec<(&str, &str)> = settings
        .ood
        .iter()
        .map(|s| (s.task.as_str(), s.split.as_str()))
        .collect();
    results::write_summary(dir.root(), &results::summarize(&named, eval, &ood))?;
    let mut changes = Vec::new();
    for (i, (before, before_measures)) in measures.iter().enumerate() {
        for (after, after_measures) in &measures[i + 1..] {
            changes.extend(results::method_changes(
                (before.name(), before_measures),
                (after.name(), after_measures),
                2,
                bootstrap,
            ));
        }
    }
    results::write_changes(
        dir.root(),
        "methods_deltas.csv",
        &dir_name(dir.root()),
        &changes,
    )
}

/// `harness report DIR` on a loop directory: every method's reports, from its files.
pub fn report_loop(root: &Path, options: &ReportOptions) -> Result<results::Measures> {
    let settings = read_settings(root)?;
    let dir = LoopDir::open(root, &settings)?;
    let mut all = Vec::new();
    for &method in &settings.methods {
        let (measures, changes) = report_method(&dir, &settings, method, settings.rounds, options)?;
        table::print(method, &settings, &measures, &changes);
        all.push((method, measures));
    }
    compare_methods(&dir, &settings, &all, options.bootstrap)?;
    Ok(all.pop().map(|(_, m)| m).unwrap_or_default())
}
