//! Paired changes (`deltas.csv`): each metric of round t against M1 (round 1) and against
//! round t-1 of the same method, and between two methods at the same round, on the problems
//! both evaluations have, with a paired 95% bootstrap interval and a p-value (exact McNemar
//! for greedy pass@1, the paired bootstrap's otherwise). See [`crate::stats`].

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::measure::{Measures, MetricRow};
use crate::metric::Metric;
use crate::report::{finish, value_text, write};
use crate::stats::{self, Bootstrap, Units};

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRow {
    pub task: String,
    pub split: String,
    /// The column name of the metric (`pass@4`, `distinct_n[correct]`).
    pub column: String,
    /// The evaluation that changed: `sft round 3`.
    pub after: String,
    /// What it is compared with: `M1`, `sft round 2`, `dpo round 3`.
    pub before: String,
    pub before_value: f64,
    pub after_value: f64,
    pub change: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub p_value: Option<f64>,
    /// The problems (or questions) both evaluations have.
    pub n_problems: usize,
}

impl ChangeRow {
    /// Whether the interval excludes 0 (a change larger than chance at the 5% level).
    pub fn excludes_zero(&self) -> bool {
        match (self.ci_low, self.ci_high) {
            (Some(low), Some(high)) => low > 0.0 || high < 0.0,
            _ => false,
        }
    }
}

/// Metrics whose change between rounds is not measured: the improvement set is already a
/// comparison with round 1.
fn compared(metric: Metric) -> bool {
    !matches!(
        metric,
        Metric::ImprovementSetSize | Metric::ImprovementSetRound1PassAtK
    )
}

fn same_row(a: &MetricRow, b: &MetricRow) -> bool {
    a.task == b.task
        && a.split == b.split
        && a.metric == b.metric
        && a.subset == b.subset
        && a.k == b.k
}

/// The change from (`before`, its units) to (`after`, its units).
fn change(
    before: (&MetricRow, &Units, String),
    after: (&MetricRow, &Units, String),
    bootstrap: Bootstrap,
) -> Option<ChangeRow> {
    let column = after.0.column();
    let key = format!(
        "change/{}/{}/{column}/{}/{}",
        after.0.task, after.0.split, after.2, before.2
    );
    let binary = after.0.metric == Metric::GreedyPass1;
    let c = stats::paired_change(before.1, after.1, binary, bootstrap, &key)?;
    Some(ChangeRow {
        task: after.0.task.clone(),
        split: after.0.split.clone(),
        column,
        after: after.2,
        before: before.2,
        before_value: c.before,
        after_value: c.after,
        change: c.delta,
        ci_low: c.interval.map(|i| i.0),
        ci_high: c.interval.map(|i| i.1),
        p_value: c.p_value,
        n_problems: c.n,
    })
}

/// Every metric of every round t >= 2 of `method` against M1 and (from round 3 on) against
/// round t-1.
pub fn round_changes(method: &str, measures: &Measures, bootstrap: Bootstrap) -> Vec<ChangeRow> {
    let rows: Vec<(&MetricRow, &Units)> = measures.metrics.iter().zip(&measures.units).collect();
    let find = |like: &MetricRow, round: u32| {
        rows.iter()
            .find(|(r, _)| r.round == round && same_row(r, like) && r.value.is_some())
    };
    let name = |round: u32| match round {
        1 => "M1".to_string(),
        t => format!("{method} round {t}"),
    };
    let mut out = Vec::new();
    for (row, units) in rows
        .iter()
        .filter(|(r, _)| r.round >= 2 && compared(r.metric))
    {
        let mut references = vec![1];
        if row.round > 2 {
            references.push(row.round - 1);
        }
        for reference in references {
            if let Some((before, before_units)) = find(row, reference)
                && let Some(c) = change(
                    (before, before_units, name(reference)),
                    (row, units, name(row.round)),
                    bootstrap,
                )
            {
                out.push(c);
            }
        }
    }
    out
}

/// Every metric of `after`'s rounds from `first_round` on against `before`'s same round, on
/// the problems both have (two methods of one loop share M1 and the problems: from round 2;
/// two runs of a loop: from round 0).
pub fn method_changes(
    (before_name, before): (&str, &Measures),
    (after_name, after): (&str, &Measures),
    first_round: u32,
    bootstrap: Bootstrap,
) -> Vec<ChangeRow> {
    let mut out = Vec::new();
    for (row, units) in after.metrics.iter().zip(&after.units) {
        if row.round < first_round || !compared(row.metric) || row.value.is_none() {
            continue;
        }
        let Some((other, other_units)) = before
            .metrics
            .iter()
            .zip(&before.units)
            .find(|(r, _)| r.round == row.round && same_row(r, row) && r.value.is_some())
        else {
            continue;
        };
        let label = |name: &str| format!("{name} round {}", row.round);
        if let Some(c) = change(
            (other, other_units, label(before_name)),
            (row, units, label(after_name)),
            bootstrap,
        ) {
            out.push(c);
        }
    }
    out
}

/// Writes `deltas.csv` (columns in the README) through a temporary file and a rename.
pub fn write_changes(dir: &Path, name: &str, run: &str, rows: &[ChangeRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "run",
        "task",
        "split",
        "metric",
        "after",
        "before",
        "before_value",
        "after_value",
        "change",
        "ci_low",
        "ci_high",
        "p_value",
        "n_problems",
    ])?;
    for r in rows {
        w.write_record([
            run,
            &r.task,
            &r.split,
            &r.column,
            &r.after,
            &r.before,
            &value_text(Some(r.before_value)),
            &value_text(Some(r.after_value)),
            &value_text(Some(r.change)),
            &value_text(r.ci_low),
            &value_text(r.ci_high),
            &r.p_value.map_or_else(String::new, |p| format!("{p:.6e}")),
            &r.n_problems.to_string(),
        ])?;
    }
    write(dir, name, finish(w)?)
}
