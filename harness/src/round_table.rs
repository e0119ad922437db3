//! The per-round table `harness run` prints after each round: the study's reversal signals
//! side by side (pass@1 up? pass@k, the improvement set and M1's pass@k on it, coverage,
//! diversity of correct responses, OOD accuracy, group disparity).

use results::Metric;
use results::{Measures, MetricRow};

use crate::loop_dir::LoopSettings;

/// Prints one line per round of `measures` for the loop's task.
pub fn print(method: &str, settings: &LoopSettings, measures: &Measures) {
    let eval = &settings.eval;
    let find = |metric: Metric, split: &str, round: u32, subset: &str, k: Option<u64>| {
        measures
            .metrics
            .iter()
            .find(|r: &&MetricRow| {
                r.metric == metric
                    && r.task == eval.task
                    && r.split == split
                    && r.round == round
                    && r.subset == subset
                    && (k.is_none() || r.k == k)
            })
            .and_then(|r| r.value)
    };
    let k_max = measures
        .metrics
        .iter()
        .filter(|r| r.metric == Metric::PassAtK && r.task == eval.task && r.split == eval.split)
        .filter_map(|r| r.k)
        .max()
        .unwrap_or(1);
    let mut rounds: Vec<u32> = measures
        .metrics
        .iter()
        .filter(|r| r.task == eval.task && r.split == eval.split)
        .map(|r| r.round)
        .collect();
    rounds.sort_unstable();
    rounds.dedup();
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let num = |v: Option<f64>| v.map_or_else(|| "    -".to_string(), |v| format!("{v:5.3}"));
    let mut header = format!(
        "{method}: {} {}  round  pass@1  pass@{k_max}  |IS|  M1 pass@{k_max} on IS  coverage  distinct-N[c]  sbert[c]",
        eval.task, eval.split
    );
    for ood in &settings.ood {
        header.push_str(&format!("  {}:{} pass@1", ood.task, ood.split));
    }
    header.push_str("  GD");
    println!("{header}");
    for round in rounds {
        let is_size = find(Metric::ImprovementSetSize, &eval.split, round, "all", None);
        let is_pass = find(
            Metric::ImprovementSetRound1PassAtK,
            &eval.split,
            round,
            "all",
            Some(k_max),
        );
        let coverage = find(
            Metric::CoveragePooled,
            &settings.train_split,
            round,
            "all",
            None,
        );
        let mut line = format!(
            "{:>width$}  {round:>5}  {:>6}  {:>6}  {:>4}  {:>16}  {:>8}  {:>13}  {:>8}",
            "",
            pct(find(Metric::GreedyPass1, &eval.split, round, "all", None)),
            pct(find(
                Metric::PassAtK,
                &eval.split,
                round,
                "all",
                Some(k_max)
            )),
            is_size.map_or_else(|| "-".to_string(), |v| format!("{v:.0}")),
            pct(is_pass),
            pct(coverage),
            num(find(Metric::DistinctN, &eval.split, round, "correct", None)),
            num(find(
                Metric::SbertDiversity,
                &eval.split,
                round,
                "correct",
                None
            )),
            width = method.len() + eval.task.len() + eval.split.len() + 3,
        );
        for ood in &settings.ood {
            let value = measures
                .metrics
                .iter()
                .find(|r| {
                    r.metric == Metric::GreedyPass1
                        && r.task == ood.task
                        && r.split == ood.split
                        && r.round == round
                        && r.subset == "all"
                })
                .and_then(|r| r.value);
            line.push_str(&format!(
                "  {:>width$}",
                pct(value),
                width = ood.task.len() + ood.split.len() + 8
            ));
        }
        // The widest comparison: across the task's splits when there is one (arith's levels
        // 1-5), else within the evaluation split.
        let disparity = measures
            .metrics
            .iter()
            .filter(|r| {
                r.metric == Metric::GroupDisparity && r.task == eval.task && r.round == round
            })
            .max_by_key(|r| r.split.len())
            .and_then(|r| r.value);
        line.push_str(&format!("  {}", num(disparity)));
        println!("{line}");
    }
}
