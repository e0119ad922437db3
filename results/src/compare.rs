//! Runs side by side (`harness compare`): one CSV and one plot per metric with a column
//! per run, greedy agreement between runs on the same problems, and a readable table.

use crate::metric::Metric;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::measure::MetricRow;
use crate::plots::{Figure, Panel, Series, add_point};
use crate::report::{RunInfo, finish, value_text, write};

/// What compare needs of one run: its metric rows (from its metrics.csv), its greedy
/// answers and its sampling throughput.
pub struct RunMeasures {
    pub info: RunInfo,
    pub metrics: Vec<MetricRow>,
    /// (task, split, round, problem id) -> (graded answer as normalised by the grader,
    /// response text) of the greedy response.
    pub greedy: BTreeMap<GreedyKey, (Option<String>, String)>,
    /// Generated tokens per second of the sampling, when the run recorded it.
    pub tokens_per_s: Option<f64>,
}

/// (task, split, round, problem id)
pub type GreedyKey = (String, String, u32, String);

/// Greedy agreement of a run with the first run on the problems both answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub run: String,
    pub task: String,
    pub split: String,
    pub round: u32,
    pub problems: usize,
    /// Same graded answer (both unanswerable counts as the same).
    pub same_answer: usize,
    /// Identical response text.
    pub same_response: usize,
}

/// The comparison of several runs.
pub struct Compared {
    /// metric -> rows keyed by (task, split, round, subset, k) with one value per run.
    pub by_metric: BTreeMap<Metric, BTreeMap<RowKey, Vec<Option<f64>>>>,
    pub agreement: Vec<Agreement>,
    pub runs: Vec<String>,
    pub tokens_per_s: Vec<Option<f64>>,
}

/// (task, split, round, subset, k)
pub type RowKey = (String, String, u32, String, Option<u64>);

/// Lines the runs' metrics up and measures greedy agreement with the first run.
pub fn compare(runs: &[RunMeasures]) -> Compared {
    let mut by_metric: BTreeMap<Metric, BTreeMap<RowKey, Vec<Option<f64>>>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        for r in &run.metrics {
            let key = (
                r.task.clone(),
                r.split.clone(),
                r.round,
                r.subset.clone(),
                r.k,
            );
            let values = by_metric
                .entry(r.metric)
                .or_default()
                .entry(key)
                .or_insert_with(|| vec![None; runs.len()]);
            values[i] = r.value;
        }
    }
    let mut agreement = Vec::new();
    if let Some((first, rest)) = runs.split_first() {
        for run in rest {
            let mut tally: BTreeMap<(String, String, u32), (usize, usize, usize)> = BTreeMap::new();
            for (key, (answer, text)) in &run.greedy {
                let Some((first_answer, first_text)) = first.greedy.get(key) else {
                    continue;
                };
                let entry = tally
                    .entry((key.0.clone(), key.1.clone(), key.2))
                    .or_default();
                entry.0 += 1;
                entry.1 += usize::from(answer == first_answer);
                entry.2 += usize::from(text == first_text);
            }
            for ((task, split, round), (problems, same_answer, same_response)) in tally {
                agreement.push(Agreement {
                    run: run.info.run.clone(),
                    task,
                    split,
                    round,
                    problems,
                    same_answer,
                    same_response,
                });
            }
        }
    }
    Compared {
        by_metric,
        agreement,
        runs: runs.iter().map(|r| r.info.run.clone()).collect(),
        tokens_per_s: runs.iter().map(|r| r.tokens_per_s).collect(),
    }
}

/// A metric name as a file name.
fn file_stem(metric: &str) -> String {
    metric
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `<metric>.csv` and `<metric>.png/.svg` per metric plus `agreement.csv` and
/// `throughput.csv` into `dir`, and returns the readable table.
pub fn write_compare(dir: &Path, compared: &Compared) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (metric, rows) in &compared.by_metric {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = ["task", "split", "round", "subset", "k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        header.extend(compared.runs.iter().cloned());
        w.write_record(&header)?;
        for ((task, split, round, subset, k), values) in rows {
            let mut record = vec![
                task.clone(),
                split.clone(),
                round.to_string(),
                subset.clone(),
                k.map_or_else(String::new, |k| k.to_string()),
            ];
            record.extend(values.iter().map(|v| value_text(*v)));
            w.write_record(&record)?;
        }
        let stem = file_stem(metric.name());
        write(dir, &format!("{stem}.csv"), finish(w)?)?;
        crate::plots::render(dir, &metric_figure(&stem, *metric, rows, &compared.runs))?;
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "run_a",
        "run_b",
        "task",
        "split",
        "round",
        "problems",
        "same_answer",
        "same_response",
    ])?;
    let first = compared.runs.first().cloned().unwrap_or_default();
    for a in &compared.agreement {
        w.write_record([
            first.clone(),
            a.run.clone(),
            a.task.clone(),
            a.split.clone(),
            a.round.to_string(),
            a.problems.to_string(),
            a.same_answer.to_string(),
            a.same_response.to_string(),
        ])?;
    }
    write(dir, "agreement.csv", finish(w)?)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["run", "tokens_per_s"])?;
    for (run, tps) in compared.runs.iter().zip(&compared.tokens_per_s) {
        w.write_record([
            run.clone(),
            tps.map_or_else(String::new, |v| format!("{v:.2}")),
        ])?;
    }
    write(dir, "throughput.csv", finish(w)?)?;
    Ok(table(compared))
}

/// Bars would need a categorical axis; a line per run over the row index reads as well
/// and keeps one drawing routine. Group rows (levels, subjects) stay in the CSV only.
fn metric_figure(
    stem: &str,
    metric: Metric,
    rows: &BTreeMap<RowKey, Vec<Option<f64>>>,
    runs: &[String],
) -> Figure {
    let shown: Vec<(&RowKey, &Vec<Option<f64>>)> = rows
        .iter()
        .filter(|((_, _, _, subset, _), _)| !subset.contains('='))
        .collect();
    let mut series: Vec<Series> = Vec::new();
    for (j, run) in runs.iter().enumerate() {
        // One line per run and (task, split, subset), over rounds or k.
        for ((task, split, round, subset, k), values) in &shown {
            let Some(value) = values[j] else { continue };
            let x = k.map_or(f64::from(*round), |k| k as f64);
            let label = format!("{run}: {task} {split} {subset}{}", round_suffix(*k, *round));
            add_point(&mut series, label, (x, value));
        }
    }
    let over_k = shown.iter().any(|(key, _)| key.4.is_some());
    let unit = metric.is_share();
    Figure {
        stem: stem.to_string(),
        panels: vec![Panel {
            title: metric.to_string(),
            x_desc: if over_k {
                "k (log2)".into()
            } else {
                "round".into()
            },
            y_desc: metric.to_string(),
            log2_x: over_k,
            integer_x: !over_k,
            unit_y: unit,
            series,
        }],
    }
}

fn round_suffix(k: Option<u64>, round: u32) -> String {
    if k.is_some() {
        format!(" round {round}")
    } else {
        String::new()
    }
}

/// The metrics a person compares first, with their subsets.
const TABLE_ROWS: &[(Metric, &str)] = &[
    (Metric::GreedyPass1, "all"),
    (Metric::PassAtK, "all"),
    (Metric::DistinctN, "correct"),
    (Metric::DistinctN, "incorrect"),
    (Metric::SbertDiversity, "correct"),
    (Metric::SbertDiversity, "incorrect"),
    (Metric::DistinctEquations, "correct"),
    (Metric::DistinctEquations, "incorrect"),
    (Metric::MeanResponseTokens, "sampled"),
    (Metric::GroupDisparity, ""),
];

fn table(c: &Compared) -> String {
    let mut out = String::new();
    let width = c
        .runs
        .iter()
        .map(|r| r.len())
        .max()
        .unwrap_or(0)
        .clamp(10, 28);
    let mut sets: Vec<(String, String, u32)> = Vec::new();
    for rows in c.by_metric.values() {
        for (task, split, round, _, _) in rows.keys() {
            let key = (task.clone(), split.clone(), *round);
            if !sets.contains(&key) {
                sets.push(key);
            }
        }
    }
    sets.sort();
    let _ = write!(out, "{:<34}", "");
    for run in &c.runs {
        let _ = write!(out, " {run:>width$}");
    }
    out.push('\n');
    for (task, split, round) in &sets {
        let _ = writeln!(out, "{task} {split} round {round}");
        for (metric, subset) in TABLE_ROWS {
            let Some(rows) = c.by_metric.get(metric) else {
                continue;
            };
            for ((t, s, r, sub, k), values) in rows {
                let subset_matches = if subset.is_empty() {
                    true
                } else {
                    sub == subset
                };
                if t != task || s != split || r != round || !subset_matches {
                    continue;
                }
                let name = match k {
                    Some(k) => metric.name().replace("@k", &format!("@{k}")),
                    None => metric.name().to_string(),
                };
                let label = if *subset == "all" || subset.is_empty() {
                    name
                } else {
                    format!("{name} [{sub}]")
                };
                let _ = write!(out, "  {label:<32}");
                for v in values {
                    let text = v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
                    let _ = write!(out, " {text:>width$}");
                }
                out.push('\n');
            }
        }
    }
    let _ = write!(out, "{:<34}", "sampling tokens/s");
    for tps in &c.tokens_per_s {
        let text = tps.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let _ = write!(out, " {text:>width$}");
    }
    out.push('\n');
    for a in &c.agreement {
        let share = |x: usize| 100.0 * x as f64 / a.problems.max(1) as f64;
        let _ = writeln!(
            out,
            "greedy agreement {} vs {} on {} {} round {}: same answer {}/{} ({:.1}%), identical response {}/{} ({:.1}%)",
            c.runs[0],
            a.run,
            a.task,
            a.split,
            a.round,
            a.same_answer,
            a.problems,
            share(a.same_answer),
            a.same_response,
            a.problems,
            share(a.same_response)
        );
    }
    out
}
