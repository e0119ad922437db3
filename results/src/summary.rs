//! The cross-method view of a loop directory (the study's Figure 1): `summary.csv` and
//! `summary.png`/`.svg` with greedy pass@1, pass@k and the Distinct-N of correct responses
//! on the evaluation split and greedy pass@1 on each OOD set, per round for every method,
//! each with its 95% interval, and per method its best round: the highest greedy pass@1 on
//! the evaluation split (the study's "best iterative" figures; ties go to the earlier round).

use std::path::Path;

use anyhow::Result;

use crate::measure::{Measures, MetricRow};
use crate::metric::Metric;
use crate::plots::{Figure, Panel, Series, add_styled, render};
use crate::report::{finish, value_text, write};

/// One value of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub method: String,
    pub round: u32,
    /// Whether this is the method's best round.
    pub best: bool,
    pub task: String,
    pub split: String,
    /// The metric column (`greedy_pass@1`, `pass@4`, `distinct_n[correct]`).
    pub column: String,
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n_problems: usize,
}

/// The summary rows of every method: `eval` is the evaluation (task, split), `ood` the OOD
/// sets.
pub fn summarize(
    methods: &[(&str, &Measures)],
    eval: (&str, &str),
    ood: &[(&str, &str)],
) -> Vec<SummaryRow> {
    let mut out = Vec::new();
    for (method, measures) in methods {
        let k_max = measures
            .metrics
            .iter()
            .filter(|r| r.metric == Metric::PassAtK && (r.task.as_str(), r.split.as_str()) == eval)
            .filter_map(|r| r.k)
            .max()
            .unwrap_or(1);
        let mut wanted = vec![
            (eval, "greedy_pass@1".to_string()),
            (eval, format!("pass@{k_max}")),
            (eval, "distinct_n[correct]".to_string()),
        ];
        wanted.extend(ood.iter().map(|set| (*set, "greedy_pass@1".to_string())));
        let best = best_round(measures, eval);
        for row in &measures.metrics {
            let here = (row.task.as_str(), row.split.as_str());
            if row.round >= 1
                && wanted
                    .iter()
                    .any(|(set, c)| *set == here && *c == row.column())
            {
                out.push(summary_row(method, row, best == Some(row.round)));
            }
        }
    }
    out
}

fn summary_row(method: &str, row: &MetricRow, best: bool) -> SummaryRow {
    SummaryRow {
        method: method.to_string(),
        round: row.round,
        best,
        task: row.task.clone(),
        split: row.split.clone(),
        column: row.column(),
        value: row.value,
        ci_low: row.ci_low,
        ci_high: row.ci_high,
        n_problems: row.n_problems,
    }
}

/// The round (from 1) with the highest greedy pass@1 on `eval`; the earlier on a tie.
fn best_round(measures: &Measures, eval: (&str, &str)) -> Option<u32> {
    let mut best: Option<(u32, f64)> = None;
    let mut rows: Vec<&MetricRow> = measures
        .metrics
        .iter()
        .filter(|r| {
            r.metric == Metric::GreedyPass1
                && r.subset == "all"
                && r.round >= 1
                && (r.task.as_str(), r.split.as_str()) == eval
        })
        .collect();
    rows.sort_by_key(|r| r.round);
    for row in rows {
        if let Some(value) = row.value
            && best.is_none_or(|(_, b)| value > b)
        {
            best = Some((row.round, value));
        }
    }
    best.map(|(round, _)| round)
}

/// Writes `summary.csv` and the summary figure into `dir`.
pub fn write_summary(dir: &Path, rows: &[SummaryRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "method",
        "round",
        "best",
        "task",
        "split",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_problems",
    ])?;
    for r in rows {
        w.write_record([
            r.method.as_str(),
            &r.round.to_string(),
            if r.best { "true" } else { "false" },
            &r.task,
            &r.split,
            &r.column,
            &value_text(r.value),
            &value_text(r.ci_low),
            &value_text(r.ci_high),
            &r.n_problems.to_string(),
        ])?;
    }
    write(dir, "summary.csv", finish(w)?)?;
    render(dir, &figure(rows))
}

/// One panel per (set, metric) of the rows, one line per method (its colour the same in
/// every panel), error bars from the intervals.
fn figure(rows: &[SummaryRow]) -> Figure {
    let mut panels: Vec<Panel> = Vec::new();
    for row in rows {
        let title = format!("{} {} {}", row.task, row.split, row.column);
        let at = match panels.iter().position(|p| p.title == title) {
            Some(at) => at,
            None => {
                panels.push(Panel {
                    title: title.clone(),
                    x_desc: "round".into(),
                    y_desc: row.column.clone(),
                    log2_x: false,
                    integer_x: true,
                    unit_y: !row.column.starts_with("distinct"),
                    series: Vec::<Series>::new(),
                });
                panels.len() - 1
            }
        };
        if let Some(value) = row.value {
            let label = row.method.clone();
            let interval = row.ci_low.zip(row.ci_high);
            let point = (f64::from(row.round), value);
            add_styled(
                &mut panels[at].series,
                (label, row.method.clone(), false),
                point,
                interval,
            );
        }
    }
    Figure {
        stem: "summary".into(),
        panels,
    }
}
