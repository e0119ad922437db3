//! The CSV reports of a run directory (columns documented in the README):
//! `metrics.csv` (long form), `rounds.csv` (wide form), `improvement_set.csv`, `coverage.csv`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::measure::{Measures, MetricRow};

/// What identifies a run in every row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunInfo {
    /// The run directory's name.
    pub run: String,
    pub backend: String,
    pub model: String,
    /// `bench` for a single evaluation, else the post-training method (sft, dpo, sft-dpo).
    pub method: String,
}

/// A value as it appears in the CSVs: six decimals, empty when undefined.
pub(crate) fn value_text(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{v:.6}"))
}

/// Writes the four CSV files into `dir`, each through a temporary file and a rename.
pub fn write_reports(dir: &Path, run: &RunInfo, measures: &Measures) -> Result<()> {
    write(dir, "metrics.csv", metrics_csv(run, &measures.metrics)?)?;
    write(dir, "rounds.csv", rounds_csv(run, &measures.metrics)?)?;
    let mut improvement = csv::Writer::from_writer(Vec::new());
    improvement.write_record([
        "run",
        "task",
        "split",
        "round",
        "is_size",
        "k",
        "round1_pass@k",
    ])?;
    for r in &measures.improvement {
        improvement.write_record([
            run.run.clone(),
            r.task.clone(),
            r.split.clone(),
            r.round.to_string(),
            r.is_size.to_string(),
            r.k.to_string(),
            value_text(r.round1_pass_at_k),
        ])?;
    }
    write(dir, "improvement_set.csv", finish(improvement)?)?;
    let mut coverage = csv::Writer::from_writer(Vec::new());
    coverage.write_record([
        "run",
        "task",
        "split",
        "round",
        "questions",
        "samples",
        "correct",
        "coverage_pooled",
        "coverage_per_question",
    ])?;
    for c in &measures.coverage {
        coverage.write_record([
            run.run.clone(),
            c.task.clone(),
            c.split.clone(),
            c.round.to_string(),
            c.questions.to_string(),
            c.samples.to_string(),
            c.correct.to_string(),
            value_text(Some(c.pooled)),
            value_text(Some(c.per_question_mean)),
        ])?;
    }
    write(dir, "coverage.csv", finish(coverage)?)
}

fn metrics_csv(run: &RunInfo, rows: &[MetricRow]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "run",
        "backend",
        "model",
        "task",
        "split",
        "round",
        "method",
        "metric",
        "subset",
        "k",
        "value",
        "n_problems",
        "ci_low",
        "ci_high",
    ])?;
    for r in rows {
        w.write_record([
            run.run.as_str(),
            &run.backend,
            &run.model,
            &r.task,
            &r.split,
            &r.round.to_string(),
            &run.method,
            r.metric.name(),
            &r.subset,
            &r.k.map_or_else(String::new, |k| k.to_string()),
            &value_text(r.value),
            &r.n_problems.to_string(),
            &value_text(r.ci_low),
            &value_text(r.ci_high),
        ])?;
    }
    finish(w)
}

/// One row per (task, split, round), one column per metric column name, in the order the
/// columns first appear.
fn rounds_csv(run: &RunInfo, rows: &[MetricRow]) -> Result<Vec<u8>> {
    let mut columns: Vec<String> = Vec::new();
    let mut keys: Vec<(&str, &str, u32)> = Vec::new();
    for r in rows {
        let column = r.column();
        if !columns.contains(&column) {
            columns.push(column);
        }
        let key = (r.task.as_str(), r.split.as_str(), r.round);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "run", "backend", "model", "method", "task", "split", "round",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(columns.iter().cloned());
    w.write_record(&header)?;
    for (task, split, round) in keys {
        let mut record = vec![
            run.run.clone(),
            run.backend.clone(),
            run.model.clone(),
            run.method.clone(),
            task.to_string(),
            split.to_string(),
            round.to_string(),
        ];
        for column in &columns {
            let value = rows
                .iter()
                .find(|r| {
                    r.task == task && r.split == split && r.round == round && &r.column() == column
                })
                .and_then(|r| r.value);
            record.push(value_text(value));
        }
        w.write_record(&record)?;
    }
    finish(w)
}

/// The bytes a CSV writer collected.
pub(crate) fn finish(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>> {
    w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))
}

/// Writes `dir/name` through a temporary file and a rename.
pub(crate) fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
    let path = dir.join(name);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a `metrics.csv` written by [`write_reports`]: the run's identity (from its first
/// row) and its rows. Columns are found by name (`ci_low` and `ci_high` may be missing, as
/// in reports written before they existed). Errors name the file, line and field.
pub fn read_metrics(path: &Path) -> Result<(RunInfo, Vec<MetricRow>)> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("reading {}", path.display()))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let mut info = RunInfo::default();
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = record.with_context(|| format!("{}:{line}", path.display()))?;
        let field = |name: &str| -> Result<&str> {
            column(name)
                .and_then(|i| record.get(i))
                .with_context(|| format!("{}:{line}: missing field `{name}`", path.display()))
        };
        let optional = |name: &str| -> Result<Option<&str>> {
            match column(name) {
                None => Ok(None),
                Some(_) => Ok(Some(field(name)?).filter(|s| !s.is_empty())),
            }
        };
        let parse_err =
            |name: &str| format!("{}:{line}: field `{name}` is not a number", path.display());
        let number = |name: &str| -> Result<Option<f64>> {
            optional(name)?
                .map(str::parse)
                .transpose()
                .with_context(|| parse_err(name))
        };
        if rows.is_empty() {
            info = RunInfo {
                run: field("run")?.to_string(),
                backend: field("backend")?.to_string(),
                model: field("model")?.to_string(),
                method: field("method")?.to_string(),
            };
        }
        rows.push(MetricRow {
            task: field("task")?.to_string(),
            split: field("split")?.to_string(),
            round: field("round")?
                .parse()
                .with_context(|| parse_err("round"))?,
            metric: field("metric")?.parse().map_err(|e: String| {
                anyhow::anyhow!("{}:{line}: field `metric`: {e}", path.display())
            })?,
            subset: field("subset")?.to_string(),
            k: optional("k")?
                .map(str::parse)
                .transpose()
                .with_context(|| parse_err("k"))?,
            value: number("value")?,
            ci_low: number("ci_low")?,
            ci_high: number("ci_high")?,
            n_problems: field("n_problems")?
                .parse()
                .with_context(|| parse_err("n_problems"))?,
        });
    }
    Ok((info, rows))
}
