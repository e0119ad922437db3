//! `harness compare RUN_A RUN_B ...`: the runs' metrics side by side (from each run's
//! metrics.csv), greedy agreement with the first run, sampling throughput; one CSV and one
//! plot per metric and a table on stdout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use results::RunMeasures;

use crate::cli::CompareArgs;
use crate::reports::sample_files;

pub fn run(args: CompareArgs) -> Result<()> {
    if args.runs.len() < 2 {
        bail!("compare needs at least two run directories");
    }
    let runs = args
        .runs
        .iter()
        .map(|dir| load(dir))
        .collect::<Result<Vec<_>>>()?;
    let compared = results::compare(&runs);
    let out = args.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(format!("compare-{now}"))
    });
    let table = results::write_compare(&out, &compared)?;
    print!("{table}");
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn load(dir: &Path) -> Result<RunMeasures> {
    let metrics = dir.join("metrics.csv");
    if !metrics.is_file() {
        bail!(
            "{}: no metrics.csv (run `harness report {}` first)",
            dir.display(),
            dir.display()
        );
    }
    let (mut info, rows) = results::read_metrics(&metrics)?;
    // Runs from different places may share a directory name: the path tells them apart.
    if info.run.is_empty() {
        info.run = dir.display().to_string();
    }
    let mut greedy = BTreeMap::new();
    for path in sample_files(dir)? {
        for s in benchmarks::read_samples(&path)? {
            if s.sample_index.is_none() {
                let answer = s.normalized.clone().or(s.extracted.clone());
                greedy.insert(
                    (s.task, s.split, s.round, s.problem_id),
                    (answer, s.response),
                );
            }
        }
    }
    Ok(RunMeasures {
        info,
        metrics: rows,
        greedy,
        tokens_per_s: tokens_per_s(&dir.join("summary.csv"))?,
    })
}

/// The sampling throughput `harness bench` recorded in summary.csv, if any.
fn tokens_per_s(path: &Path) -> Result<Option<f64>> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let Some(column) = headers.iter().position(|h| h == "tokens_per_s") else {
        return Ok(None);
    };
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        if let Some(value) = record.get(column).and_then(|v| v.parse().ok()) {
            return Ok(Some(value));
        }
    }
    Ok(None)
}
