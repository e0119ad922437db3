//! The per-round table `harness run` prints after each round: the study's reversal signals
//! side by side (pass@1 up? pass@k, the improvement set and M1's pass@k on it, coverage,
//! diversity of correct responses, OOD accuracy, group disparity), each round's change of
//! pass@1, pass@k and OOD pass@1 against M1 (`*` where its paired 95% interval excludes 0),
//! and under the table the smallest pass@1 change the evaluation set can detect.

use results::{ChangeRow, Measures, Metric, MetricRow};

use super::dir::LoopSettings;
use super::flags::LoopMethod;

/// Looks up values of one method's measures.
struct Lookup<'a> {
    measures: &'a Measures,
    changes: &'a [ChangeRow],
}

impl Lookup<'_> {
    fn row(&self, task: &str, split: &str, column: &str, round: u32) -> Option<&MetricRow> {
        self.measures.metrics.iter().find(|r| {
            r.task == task && r.split == split && r.round == round && r.column() == column
        })
    }

    fn value(&self, task: &str, split: &str, column: &str, round: u32) -> Option<f64> {
        self.row(task, split, column, round).and_then(|r| r.value)
    }

    /// `40.0%`, and from round 2 on its change against M1: `40.0% +10.0*`.
    fn share_with_change(&self, task: &str, split: &str, column: &str, round: u32) -> String {
        let mut text = pct(self.value(task, split, column, round));
        let after = format!(" round {round}");
        let change = self.changes.iter().find(|c| {
            c.task == task
                && c.split == split
                && c.column == column
                && c.before == "M1"
                && c.after.ends_with(&after)
        });
        if let Some(c) = change {
            let mark = if c.excludes_zero() { "*" } else { " " };
            text.push_str(&format!(" {:+.1}{mark}", 100.0 * c.change));
        }
        text
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "    -".to_string(), |v| format!("{v:5.3}"))
}

/// Prints one line per round of `measures` for the loop's task; `changes` are the method's
/// paired changes (`deltas.csv`).
pub fn print(
    loop_method: LoopMethod,
    settings: &LoopSettings,
    measures: &Measures,
    changes: &[ChangeRow],
) {
    let method = loop_method.name();
    let eval = &settings.eval;
    let (task, split) = (eval.task.as_str(), eval.split.as_str());
    let look = Lookup { measures, changes };
    let k_max = measures
        .metrics
        .iter()
        .filter(|r| r.metric == Metric::PassAtK && r.task == task && r.split == split)
        .filter_map(|r| r.k)
        .max()
        .unwrap_or(1);
    let mut rounds: Vec<u32> = measures
        .metrics
        .iter()
        .filter(|r| r.task == task && r.split == split)
        .map(|r| r.round)
        .collect();
    rounds.sort_unstable();
    rounds.dedup();
    let pass_k = format!("pass@{k_max}");
    let mut header = format!(
        "{method}: {task} {split}  round  {:<13}  {:<13}  |IS|  M1 pass@{k_max} on IS  coverage  distinct-N[c]  sbert[c]",
        "pass@1", pass_k
    );
    for ood in &settings.ood {
        let width = (ood.task.len() + ood.split.len() + 8).max(13);
        let name = format!("{}:{} pass@1", ood.task, ood.split);
        header.push_str(&format!("  {name:<width$}"));
    }
    header.push_str("  GD");
    println!("{header}");
    for &round in &rounds {
        let is_column = format!("is_round1_pass@{k_max}");
        let mut line = format!(
            "{:>width$}  {round:>5}  {:<13}  {:<13}  {:>4}  {:>16}  {:>8}  {:>13}  {:>8}",
            "",
            look.share_with_change(task, split, "greedy_pass@1", round),
            look.share_with_change(task, split, &pass_k, round),
            look.value(task, split, "improvement_set_size", round)
                .map_or_else(|| "-".to_string(), |v| format!("{v:.0}")),
            pct(look.value(task, split, &is_column, round)),
            pct(look.value(task, &settings.train_split, "coverage_pooled", round)),
            num(look.value(task, split, "distinct_n[correct]", round)),
            num(look.value(task, split, "sbert_diversity[correct]", round)),
            width = method.len() + task.len() + split.len() + 3,
        );
        for ood in &settings.ood {
            let text = look.share_with_change(&ood.task, &ood.split, "greedy_pass@1", round);
            let width = (ood.task.len() + ood.split.len() + 8).max(13);
            line.push_str(&format!("  {text:<width$}"));
        }
        line.push_str(&format!("  {}", num(disparity(measures, task, round))));
        println!("{line}");
    }
    for &round in &rounds {
        if let Some(owner) = settings.shared_round(loop_method, round) {
            println!(
                "  round {round} is {}'s round {round} (the same training), computed once: {method}/round-{round} links to it.",
                owner.name()
            );
        }
    }
    let m1 = look.row(task, split, "greedy_pass@1", 1);
    if let Some(m1) = m1
        && let Some(p) = m1.value
        && let Some(detectable) = results::stats::detectable_change(p, m1.n_problems)
    {
        println!(
            "  changes are against M1; * = paired 95% interval excludes 0. On {} problems at M1's {:.1}%, the smallest pass@1 change detectable (80% power, 5% level) is {:.1} points.",
            m1.n_problems,
            100.0 * p,
            100.0 * detectable
        );
        if detectable > SMOKE_CHANGE {
            println!(
                "  SMOKE RUN: {} problems cannot show a {:.0}-point change of pass@1 (at M1's {:.1}% that takes about {} problems); read this table as a check that the loop runs, not as a result (experiments/arith-smollm2/ is a run sized to answer).",
                m1.n_problems,
                100.0 * SMOKE_CHANGE,
                100.0 * p,
                problems_for_change(p, SMOKE_CHANGE)
            );
        }
    }
}

/// The change of greedy pass@1 a run must be able to detect to be read as a result rather
/// than a smoke run (the size the study's issue asks for).
const SMOKE_CHANGE: f64 = 0.10;

/// The fewest problems on which `change` is detectable around a share `p`.
fn problems_for_change(p: f64, change: f64) -> usize {
    (1..100_000)
        .find(|&n| results::stats::detectable_change(p, n).is_some_and(|d| d <= change))
        .unwrap_or(100_000)
}

/// The round's widest group disparity: the evaluation task's across its splits (arith's
/// levels 1-5) or within its split, else an OOD task's (a gsm8k run's MATH levels).
fn disparity(measures: &Measures, task: &str, round: u32) -> Option<f64> {
    measures
        .metrics
        .iter()
        .filter(|r| r.metric == Metric::GroupDisparity && r.round == round && r.value.is_some())
        .max_by_key(|r| (r.task == task, r.split.len()))
        .and_then(|r| r.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task: &str, split: &str, round: u32, value: f64) -> MetricRow {
        MetricRow {
            task: task.into(),
            split: split.into(),
            round,
            metric: Metric::GroupDisparity,
            subset: "level=1 vs level=5".into(),
            k: None,
            value: Some(value),
            ci_low: None,
            ci_high: None,
            n_problems: 10,
        }
    }

    #[test]
    fn a_ten_point_change_takes_about_two_hundred_problems_at_one_half() {
        assert_eq!(problems_for_change(0.5, 0.10), 197);
        assert_eq!(problems_for_change(0.3, 0.10), 165);
        let just_enough = results::stats::detectable_change(0.5, 197).unwrap();
        let one_short = results::stats::detectable_change(0.5, 196).unwrap();
        assert!(just_enough <= 0.10 && one_short > 0.10);
    }

    #[test]
    fn disparity_comes_from_an_ood_task_when_the_evaluation_task_has_none() {
        // A gsm8k loop: only the MATH OOD set has levels.
        let measures = Measures {
            metrics: vec![row("math", "math500", 2, 0.4)],
            ..Measures::default()
        };
        assert_eq!(disparity(&measures, "gsm8k", 2), Some(0.4));
        assert_eq!(disparity(&measures, "gsm8k", 3), None);
        // The evaluation task's own, widest first, wins over an OOD task's.
        let measures = Measures {
            metrics: vec![
                row("math", "math500", 2, 0.4),
                row("arith", "test", 2, 0.2),
                row("arith", "test+ood", 2, 0.9),
            ],
            ..Measures::default()
        };
        assert_eq!(disparity(&measures, "arith", 2), Some(0.9));
    }
}
