//! The summary of an evaluation round: per task, greedy pass@1, pass@k of the samples,
//! tokens and throughput, as `summary.csv` and a table on stdout.

use std::path::Path;

use anyhow::Result;
use benchmarks::{Sample, Task};
use results::{mean_pass_at_k, pass_at_k_levels};
use serde_json::Value;

/// The numbers of one task.
pub struct TaskSummary {
    pub task: &'static str,
    pub task_version: u32,
    pub split: String,
    pub problems: usize,
    pub greedy_pass_at_1: f64,
    /// (k, mean pass@k over problems with n samples).
    pub pass_at_k: Vec<(u64, f64)>,
    pub tokens: u64,
    pub mean_tokens: f64,
    pub length_share: f64,
}

impl TaskSummary {
    pub fn new(task: &'static Task, split: &str, samples: &[Sample], n: u32) -> Self {
        // (drawn, correct) sample counts per problem, in first-seen order, counted once.
        let mut counts: Vec<(&str, u64, u64)> = Vec::new();
        let mut position: std::collections::HashMap<&str, usize> = Default::default();
        for s in samples {
            let at = *position.entry(&s.problem_id).or_insert_with(|| {
                counts.push((&s.problem_id, 0, 0));
                counts.len() - 1
            });
            if s.sample_index.is_some() {
                counts[at].1 += 1;
                counts[at].2 += u64::from(s.correct == Some(true));
            }
        }
        let greedy: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sample_index.is_none())
            .collect();
        let greedy_correct = greedy.iter().filter(|s| s.correct == Some(true)).count();
        let mut pass = Vec::new();
        let drawn: Vec<(u64, u64)> = counts.iter().map(|&(_, n, c)| (n, c)).collect();
        for k in pass_at_k_levels(u64::from(n)) {
            if let (Some(value), _) = mean_pass_at_k(&drawn, k) {
                pass.push((k, value));
            }
        }
        let tokens: u64 = samples
            .iter()
            .map(|s| u64::from(s.completion_tokens.unwrap_or(0)))
            .sum();
        let lengths = samples
            .iter()
            .filter(|s| s.finish_reason.as_deref() == Some("length"))
            .count();
        TaskSummary {
            task: task.name,
            task_version: task.version,
            split: split.to_string(),
            problems: counts.len(),
            greedy_pass_at_1: greedy_correct as f64 / greedy.len().max(1) as f64,
            pass_at_k: pass,
            tokens,
            mean_tokens: tokens as f64 / samples.len().max(1) as f64,
            length_share: lengths as f64 / samples.len().max(1) as f64,
        }
    }
}

/// Writes `summary.csv`: one row per task; `context` holds the run-wide columns.
pub fn write_csv(path: &Path, summaries: &[TaskSummary], context: &Value) -> Result<()> {
    let ks: Vec<u64> = summaries
        .iter()
        .flat_map(|s| s.pass_at_k.iter().map(|(k, _)| *k))
        .fold(Vec::new(), |mut acc, k| {
            if !acc.contains(&k) {
                acc.push(k);
            }
            acc
        });
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "task",
        "task_version",
        "split",
        "backend",
        "model",
        "n",
        "temperature",
        "seed",
        "problems",
        "greedy_pass@1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(ks.iter().map(|k| format!("pass@{k}")));
    header.extend(
        [
            "tokens",
            "mean_response_tokens",
            "length_share",
            "wall_s",
            "tokens_per_s",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    writer.write_record(&header)?;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let wall = context["wall_s"].as_f64().unwrap_or(0.0);
    let new_tokens = context["new_tokens"].as_f64().unwrap_or(0.0);
    for s in summaries {
        let mut row = vec![
            s.task.to_string(),
            s.task_version.to_string(),
            s.split.clone(),
            text(&context["backend"]),
            text(&context["model"]),
            text(&context["n"]),
            text(&context["temperature"]),
            text(&context["seed"]),
            s.problems.to_string(),
            format!("{:.6}", s.greedy_pass_at_1),
        ];
        for k in &ks {
            let value = s.pass_at_k.iter().find(|(kk, _)| kk == k).map(|(_, v)| *v);
            row.push(value.map_or_else(String::new, |v| format!("{v:.6}")));
        }
        row.push(s.tokens.to_string());
        row.push(format!("{:.2}", s.mean_tokens));
        row.push(format!("{:.4}", s.length_share));
        row.push(format!("{wall:.3}"));
        row.push(format!(
            "{:.2}",
            if wall > 0.0 { new_tokens / wall } else { 0.0 }
        ));
        writer.write_record(&row)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    crate::run_dir::write_atomic(path, &bytes)
}

/// Prints a readable table.
pub fn print_table(summaries: &[TaskSummary], context: &Value) {
    println!(
        "{} {}  n={} T={} seed={}",
        context["backend"].as_str().unwrap_or(""),
        context["model"].as_str().unwrap_or(""),
        context["n"],
        context["temperature"],
        context["seed"]
    );
    for s in summaries {
        let ks: Vec<String> = s
            .pass_at_k
            .iter()
            .map(|(k, v)| format!("pass@{k} {:5.1}%", 100.0 * v))
            .collect();
        println!(
            "  {:<6} {:<8} {:>4} problems  greedy pass@1 {:5.1}%  {}  mean {:.0} tokens, {:.0}% hit max_tokens",
            s.task,
            s.split,
            s.problems,
            100.0 * s.greedy_pass_at_1,
            ks.join("  "),
            s.mean_tokens,
            100.0 * s.length_share
        );
    }
    let wall = context["wall_s"].as_f64().unwrap_or(0.0);
    let new_tokens = context["new_tokens"].as_f64().unwrap_or(0.0);
    println!(
        "  sampling: {new_tokens:.0} new tokens in {wall:.1} s ({:.1} tokens/s)",
        if wall > 0.0 { new_tokens / wall } else { 0.0 }
    );
}
