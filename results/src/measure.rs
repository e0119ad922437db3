//! Every metric of SPEC.md for a run: one [`SampleSet`] per (task, split, round) in, metric
//! rows out. Per set: greedy pass@1 and pass@k (overall and per MATH level / subject),
//! coverage, diversity over correct and incorrect responses separately, group disparity and
//! response lengths; across sets: the improvement set of each round against round 1.

use crate::metric::Metric;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, bail};
use benchmarks::Sample;
use serde::Serialize;

use crate::diversity::{distinct_equations, distinct_n};
use crate::pass_at_k::{mean_pass_at_k, pass_at_k, pass_at_k_levels};
use crate::rounds::{coverage, improvement_set};
use crate::semantic::{Embedder, semantic_diversity};
use crate::stats::{self, Bootstrap, Statistic, Units};

/// Tasks whose responses carry equations (GSM8K-shaped answers with `<<a*b=c>>`), so
/// Distinct Equations is reported for them.
pub const EQUATION_TASKS: &[&str] = &["gsm8k", "svamp", "arith"];

/// The groups a problem belongs to (SPEC.md: MATH level and subject; arith's step count is
/// its level).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProblemGroups {
    pub level: Option<u8>,
    pub subject: Option<String>,
}

/// The graded samples of one task split in one round.
pub struct SampleSet<'a> {
    pub task: String,
    pub split: String,
    pub round: u32,
    pub samples: &'a [Sample],
    /// Problem id -> groups; problems missing here belong to no group.
    pub groups: &'a HashMap<String, ProblemGroups>,
}

/// One value in long form. `subset` is `all`, `correct`/`incorrect` (diversity),
/// `greedy`/`sampled` (lengths), `level=N` or `subject=S` (groups). `value` is None when
/// the metric is undefined on this set (say, diversity of correct responses when no
/// question has two); `n_problems` is how many problems the value averages over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    pub task: String,
    pub split: String,
    pub round: u32,
    pub metric: Metric,
    pub subset: String,
    pub k: Option<u64>,
    pub value: Option<f64>,
    /// The 95% bootstrap interval over the problems (or questions) the value rests on;
    /// None when intervals are off or the value is undefined on most resamples.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n_problems: usize,
}

impl MetricRow {
    /// The column this value gets in the wide form: the metric with its k filled in and a
    /// non-`all` subset in brackets (`pass@4`, `distinct_n[correct]`,
    /// `greedy_pass@1[level=3]`).
    pub fn column(&self) -> String {
        let mut name = match self.k {
            Some(k) => self.metric.name().replace("@k", &format!("@{k}")),
            None => self.metric.name().to_string(),
        };
        if self.subset != "all" {
            name.push_str(&format!("[{}]", self.subset));
        }
        name
    }
}

/// Correct answer coverage of one set (SPEC.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageRow {
    pub task: String,
    pub split: String,
    pub round: u32,
    pub questions: usize,
    pub samples: usize,
    pub correct: usize,
    pub pooled: f64,
    pub per_question_mean: f64,
}

/// Round 1's pass@k on the improvement set of round t.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImprovementRow {
    pub task: String,
    pub split: String,
    pub round: u32,
    pub is_size: usize,
    pub k: u64,
    /// None when IS(t) is empty.
    pub round1_pass_at_k: Option<f64>,
}

/// Everything measured on a run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Measures {
    pub metrics: Vec<MetricRow>,
    /// The per-problem contributions of each row of `metrics` (same order), from which
    /// paired changes between rounds and methods are computed.
    pub units: Vec<Units>,
    pub coverage: Vec<CoverageRow>,
    pub improvement: Vec<ImprovementRow>,
}

/// One problem's responses.
#[derive(Default)]
struct ProblemSamples<'a> {
    greedy: Option<&'a Sample>,
    sampled: Vec<&'a Sample>,
}

impl ProblemSamples<'_> {
    fn correct_count(&self) -> usize {
        self.sampled.iter().filter(|s| is_correct(s)).count()
    }
}

fn is_correct(sample: &Sample) -> bool {
    sample.correct == Some(true)
}

/// Groups the samples of a set by problem, in first-seen order. Every sample must be graded.
fn by_problem<'a>(set: &SampleSet<'a>) -> Result<Vec<(&'a str, ProblemSamples<'a>)>> {
    let mut order: Vec<(&str, ProblemSamples)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for sample in set.samples {
        if sample.correct.is_none() {
            bail!(
                "{} {} round {}: problem {} has an ungraded response (grade first, e.g. `harness report --regrade`)",
                set.task,
                set.split,
                set.round,
                sample.problem_id
            );
        }
        let at = *position.entry(&sample.problem_id).or_insert_with(|| {
            order.push((&sample.problem_id, ProblemSamples::default()));
            order.len() - 1
        });
        match sample.sample_index {
            None => order[at].1.greedy = Some(sample),
            Some(_) => order[at].1.sampled.push(sample),
        }
    }
    Ok(order)
}

/// Measures every set, then the improvement sets of rounds after the first.
pub fn measure<'e>(
    sets: &[SampleSet],
    mut embedder: Option<&mut (dyn Embedder + 'e)>,
    bootstrap: Bootstrap,
) -> Result<Measures> {
    let mut out = Measures::default();
    let grouped = sets.iter().map(by_problem).collect::<Result<Vec<_>>>()?;
    for (set, problems) in sets.iter().zip(&grouped) {
        let problems = problems.as_slice();
        if problems.is_empty() {
            continue;
        }
        let mut rows = RowSink {
            set,
            out: &mut out,
            bootstrap,
        };
        accuracy(&mut rows, problems, set.groups);
        group_disparity(&mut rows, problems, set.groups);
        diversity(&mut rows, problems, embedder.as_deref_mut())?;
        lengths(&mut rows, problems);
        if let Some(row) = coverage_row(set, problems) {
            let (pooled, per_question) = coverage_units(problems);
            rows.push(Metric::CoveragePooled, "all", None, pooled, row.questions);
            let n = row.questions;
            rows.push(Metric::CoveragePerQuestion, "all", None, per_question, n);
            rows.out.coverage.push(row);
        }
    }
    improvement(sets, &grouped, &mut out, bootstrap);
    cross_split_disparity(sets, &grouped, &mut out, bootstrap);
    Ok(out)
}

/// Appends rows that share a set's task, split and round: the value and its interval from
/// the row's units.
struct RowSink<'s, 'a> {
    set: &'s SampleSet<'a>,
    out: &'s mut Measures,
    bootstrap: Bootstrap,
}

impl RowSink<'_, '_> {
    fn push(&mut self, metric: Metric, subset: &str, k: Option<u64>, units: Units, n: usize) {
        let mut row = MetricRow {
            task: self.set.task.clone(),
            split: self.set.split.clone(),
            round: self.set.round,
            metric,
            subset: subset.to_string(),
            k,
            value: units.value(),
            ci_low: None,
            ci_high: None,
            n_problems: n,
        };
        if row.value.is_some() {
            let key = format!("{}/{}/{}/{}", row.task, row.split, row.round, row.column());
            if let Some((low, high)) = stats::interval(&units, self.bootstrap, &key) {
                (row.ci_low, row.ci_high) = (Some(low), Some(high));
            }
        }
        self.out.metrics.push(row);
        self.out.units.push(units);
    }
}

/// Ids and values as the units of a mean.
fn mean_units(pairs: Vec<(String, f64)>) -> Units {
    let (ids, values) = pairs.into_iter().unzip();
    Units::mean(ids, values)
}

/// Ids and (numerator, denominator) pairs as the units of a ratio of sums.
fn ratio_units(triples: Vec<(String, f64, f64)>) -> Units {
    let mut ids = Vec::with_capacity(triples.len());
    let (mut num, mut den) = (Vec::new(), Vec::new());
    for (id, n, d) in triples {
        ids.push(id);
        num.push(n);
        den.push(d);
    }
    Units {
        ids,
        statistic: Statistic::Ratio { num, den },
    }
}

/// The subsets a problem counts in: `all`, then its level and subject if it has them.
fn subsets_of(id: &str, groups: &HashMap<String, ProblemGroups>) -> Vec<String> {
    let mut subsets = vec!["all".to_string()];
    if let Some(g) = groups.get(id) {
        if let Some(level) = g.level {
            subsets.push(format!("level={level}"));
        }
        if let Some(subject) = &g.subject {
            subsets.push(format!("subject={subject}"));
        }
    }
    subsets
}

/// Greedy pass@1 (the share of problems whose greedy response is correct) and the mean
/// pass@k of the samples for k = 1, 2, 4, ..., n, overall and per group.
fn accuracy(
    rows: &mut RowSink,
    problems: &[(&str, ProblemSamples)],
    groups: &HashMap<String, ProblemGroups>,
) {
    // subset -> (greedy outcome per problem, (id, drawn, correct) per problem with samples)
    type Outcomes<'a> = (Vec<(String, f64)>, Vec<(&'a str, u64, u64)>);
    let mut by_subset: BTreeMap<String, Outcomes> = BTreeMap::new();
    let mut n_max = 0u64;
    for (id, p) in problems {
        for subset in subsets_of(id, groups) {
            let entry = by_subset.entry(subset).or_default();
            if let Some(g) = p.greedy {
                entry
                    .0
                    .push((id.to_string(), f64::from(u8::from(is_correct(g)))));
            }
            if !p.sampled.is_empty() {
                entry
                    .1
                    .push((id, p.sampled.len() as u64, p.correct_count() as u64));
            }
        }
        n_max = n_max.max(p.sampled.len() as u64);
    }
    // `all` first, then the groups in order.
    let mut keys: Vec<String> = by_subset.keys().cloned().collect();
    keys.sort_by_key(|k| (k.as_str() != "all", group_sort_key(k)));
    for subset in keys {
        let (greedy, counts) = by_subset.remove(&subset).expect("a key of the map");
        if !greedy.is_empty() {
            let n = greedy.len();
            rows.push(Metric::GreedyPass1, &subset, None, mean_units(greedy), n);
        }
        for k in pass_at_k_levels(n_max) {
            let units = pass_at_k_units(&counts, k);
            if !units.is_empty() {
                let n = units.len();
                rows.push(Metric::PassAtK, &subset, Some(k), units, n);
            }
        }
    }
}

/// Each problem's pass@k, for the problems with at least k samples (the problems
/// [`mean_pass_at_k`] averages over).
fn pass_at_k_units(counts: &[(&str, u64, u64)], k: u64) -> Units {
    mean_units(
        counts
            .iter()
            .filter_map(|&(id, n, c)| pass_at_k(n, c, k).map(|v| (id.to_string(), v)))
            .collect(),
    )
}

/// Sort key that puts `level=10` after `level=9`.
fn group_sort_key(subset: &str) -> (String, u64, String) {
    let (kind, value) = subset.split_once('=').unwrap_or((subset, ""));
    (
        kind.to_string(),
        value.parse().unwrap_or(u64::MAX),
        value.to_string(),
    )
}

/// Group disparity GD = (pass@1(lowest level) - pass@1(highest level)) / pass@1(lowest
/// level), on greedy responses (SPEC.md: MATH levels 1 and 5; arith's level 1 and its
/// hardest). Needs two levels and a lowest-level pass@1 above 0.
fn group_disparity(
    rows: &mut RowSink,
    problems: &[(&str, ProblemSamples)],
    groups: &HashMap<String, ProblemGroups>,
) {
    let mut outcomes = Vec::new();
    level_outcomes(&mut outcomes, "", problems, groups);
    push_disparity(rows, &outcomes);
}

/// (id, level, greedy correct) of each problem with a level and a greedy response.
type LevelOutcomes = Vec<(String, u8, bool)>;

/// Appends the level outcomes of `problems`, ids prefixed (to tell splits apart).
fn level_outcomes(
    out: &mut LevelOutcomes,
    prefix: &str,
    problems: &[(&str, ProblemSamples)],
    groups: &HashMap<String, ProblemGroups>,
) {
    for (id, p) in problems {
        if let (Some(level), Some(g)) = (groups.get(*id).and_then(|g| g.level), p.greedy) {
            out.push((format!("{prefix}{id}"), level, is_correct(g)));
        }
    }
}

fn push_disparity(rows: &mut RowSink, outcomes: &LevelOutcomes) {
    let (Some(low), Some(high)) = (
        outcomes.iter().map(|o| o.1).min(),
        outcomes.iter().map(|o| o.1).max(),
    ) else {
        return;
    };
    if low == high {
        return;
    }
    let ends: Vec<&(String, u8, bool)> = outcomes
        .iter()
        .filter(|o| o.1 == low || o.1 == high)
        .collect();
    let units = Units {
        ids: ends.iter().map(|o| o.0.clone()).collect(),
        statistic: Statistic::Disparity {
            high: ends.iter().map(|o| o.1 == high).collect(),
            correct: ends.iter().map(|o| o.2).collect(),
        },
    };
    let subset = format!("level={low} vs level={high}");
    let n = units.len();
    rows.push(Metric::GroupDisparity, &subset, None, units, n);
}

/// Group disparity across a task's splits of one round (arith: levels 1-3 in `test`, 4-5 in
/// `ood`; SPEC.md compares level 1 with the hardest level evaluated), reported under the
/// split names joined by `+` (`test+ood`). Only where two or more splits carry levels.
fn cross_split_disparity(
    sets: &[SampleSet],
    grouped: &[Vec<(&str, ProblemSamples)>],
    out: &mut Measures,
    bootstrap: Bootstrap,
) {
    let mut keys: Vec<(&str, u32)> = Vec::new();
    for set in sets {
        if !keys.contains(&(set.task.as_str(), set.round)) {
            keys.push((set.task.as_str(), set.round));
        }
    }
    for (task, round) in keys {
        let mut outcomes = LevelOutcomes::new();
        // (lowest level, split), so the name reads from the easiest split (`test+ood`).
        let mut splits = Vec::new();
        for (set, problems) in sets.iter().zip(grouped) {
            let lowest = problems
                .iter()
                .filter_map(|(id, _)| set.groups.get(*id).and_then(|g| g.level))
                .min();
            if let Some(lowest) = lowest
                && set.task == task
                && set.round == round
                && set.split != "train"
            {
                let prefix = format!("{}:", set.split);
                level_outcomes(&mut outcomes, &prefix, problems, set.groups);
                splits.push((lowest, set.split.as_str()));
            }
        }
        if splits.len() < 2 {
            continue;
        }
        splits.sort();
        let splits: Vec<&str> = splits.into_iter().map(|(_, s)| s).collect();
        let combined = SampleSet {
            task: task.to_string(),
            split: splits.join("+"),
            round,
            samples: &[],
            groups: sets[0].groups,
        };
        let mut rows = RowSink {
            set: &combined,
            out,
            bootstrap,
        };
        push_disparity(&mut rows, &outcomes);
    }
}

/// Distinct-N, SentenceBERT diversity and (for equation tasks) Distinct Equations of each
/// question's sampled responses, over the correct and the incorrect ones separately,
/// averaged over the questions where the metric is defined (two responses or more).
fn diversity<'e>(
    rows: &mut RowSink,
    problems: &[(&str, ProblemSamples)],
    embedder: Option<&mut (dyn Embedder + 'e)>,
) -> Result<()> {
    let with_equations = EQUATION_TASKS.contains(&rows.set.task.as_str());
    let mut embeddings: HashMap<&str, Vec<f32>> = HashMap::new();
    if let Some(embedder) = embedder {
        let texts: Vec<&str> = problems
            .iter()
            .flat_map(|(_, p)| p.sampled.iter().map(|s| s.response.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let vectors = embedder.embed(&texts)?;
        embeddings = texts.into_iter().zip(vectors).collect();
    }
    for (subset, want) in [("correct", true), ("incorrect", false)] {
        let sets: Vec<(&str, Vec<&str>)> = problems
            .iter()
            .map(|(id, p)| {
                let responses = p
                    .sampled
                    .iter()
                    .filter(|s| is_correct(s) == want)
                    .map(|s| s.response.as_str())
                    .collect();
                (*id, responses)
            })
            .collect();
        let defined = |f: &dyn Fn(&[&str]) -> Option<f64>| -> Units {
            mean_units(
                sets.iter()
                    .filter_map(|(id, s)| f(s).map(|v| (id.to_string(), v)))
                    .collect(),
            )
        };
        let distinct = defined(&distinct_n);
        let n = distinct.len();
        rows.push(Metric::DistinctN, subset, None, distinct, n);
        if !embeddings.is_empty() {
            let semantic = defined(&|s: &[&str]| {
                let vectors: Vec<&[f32]> = s.iter().map(|t| embeddings[t].as_slice()).collect();
                semantic_diversity(&vectors)
            });
            let n = semantic.len();
            rows.push(Metric::SbertDiversity, subset, None, semantic, n);
        }
        if with_equations {
            let equations = defined(&distinct_equations);
            let n = equations.len();
            rows.push(Metric::DistinctEquations, subset, None, equations, n);
        }
    }
    Ok(())
}

/// Mean response length in tokens and the share of responses that stopped at max_tokens,
/// for greedy and sampled responses separately (per problem: the sums over its responses,
/// so a resample of problems keeps each problem's responses together).
fn lengths<'a>(rows: &mut RowSink, problems: &[(&str, ProblemSamples<'a>)]) {
    for subset in ["greedy", "sampled"] {
        let responses = |p: &ProblemSamples<'a>| -> Vec<&'a Sample> {
            match subset {
                "greedy" => p.greedy.into_iter().collect(),
                _ => p.sampled.clone(),
            }
        };
        if problems.iter().all(|(_, p)| responses(p).is_empty()) {
            continue;
        }
        let mut tokens = Vec::new();
        let mut hits = Vec::new();
        for (id, p) in problems {
            let mine = responses(p);
            let counted: Vec<f64> = mine
                .iter()
                .filter_map(|s| s.completion_tokens.map(f64::from))
                .collect();
            let sum: f64 = counted.iter().sum();
            tokens.push((id.to_string(), sum, counted.len() as f64));
            let hit = mine
                .iter()
                .filter(|s| s.finish_reason.as_deref() == Some("length"))
                .count();
            hits.push((id.to_string(), hit as f64, mine.len() as f64));
        }
        let n = problems.len();
        rows.push(
            Metric::MeanResponseTokens,
            subset,
            None,
            ratio_units(tokens),
            n,
        );
        rows.push(Metric::MaxTokensShare, subset, None, ratio_units(hits), n);
    }
}

/// Coverage's units: pooled (correct / drawn per problem) and per question (its share),
/// over the problems with samples.
fn coverage_units(problems: &[(&str, ProblemSamples)]) -> (Units, Units) {
    let asked: Vec<(String, f64, f64)> = problems
        .iter()
        .filter(|(_, p)| !p.sampled.is_empty())
        .map(|(id, p)| {
            (
                id.to_string(),
                p.correct_count() as f64,
                p.sampled.len() as f64,
            )
        })
        .collect();
    let shares = asked.iter().map(|(id, c, n)| (id.clone(), c / n)).collect();
    (ratio_units(asked), mean_units(shares))
}

fn coverage_row(set: &SampleSet, problems: &[(&str, ProblemSamples)]) -> Option<CoverageRow> {
    let counts: Vec<(usize, usize)> = problems
        .iter()
        .map(|(_, p)| (p.correct_count(), p.sampled.len()))
        .collect();
    let c = coverage(&counts)?;
    Some(CoverageRow {
        task: set.task.clone(),
        split: set.split.clone(),
        round: set.round,
        questions: c.questions,
        samples: c.samples,
        correct: counts.iter().map(|(c, _)| c).sum(),
        pooled: c.pooled,
        per_question_mean: c.per_question_mean,
    })
}

/// Problem id -> whether its greedy response is correct.
fn greedy_outcomes<'a>(problems: &[(&'a str, ProblemSamples)]) -> BTreeMap<&'a str, bool> {
    problems
        .iter()
        .filter_map(|(id, p)| p.greedy.map(|g| (*id, is_correct(g))))
        .collect()
}

/// For every set of round t > 1 with a round-1 set of the same task and split: |IS(t)| and
/// round 1's pass@k on IS(t) for k = 1, 2, 4, ..., n. Sets without greedy responses (the
/// training questions) have no improvement set.
/// `grouped[i]` holds the problems of `sets[i]`.
fn improvement(
    sets: &[SampleSet],
    grouped: &[Vec<(&str, ProblemSamples)>],
    out: &mut Measures,
    bootstrap: Bootstrap,
) {
    for (set, problems) in sets.iter().zip(grouped).filter(|(s, _)| s.round > 1) {
        let Some(first) = sets
            .iter()
            .position(|s| s.round == 1 && s.task == set.task && s.split == set.split)
        else {
            continue;
        };
        let first_problems = &grouped[first];
        let (first_greedy, greedy) = (greedy_outcomes(first_problems), greedy_outcomes(problems));
        if first_greedy.is_empty() || greedy.is_empty() {
            // No greedy responses (the training questions): IS(t) is undefined, not empty.
            continue;
        }
        let is: BTreeSet<&str> = improvement_set(&first_greedy, &greedy)
            .into_iter()
            .collect();
        let mut rows = RowSink {
            set,
            out: &mut *out,
            bootstrap,
        };
        // Over the problems both rounds answered greedily: 1 for each in IS(t).
        let paired: Vec<(String, f64)> = greedy
            .keys()
            .filter(|id| first_greedy.contains_key(*id))
            .map(|id| (id.to_string(), f64::from(u8::from(is.contains(id)))))
            .collect();
        let (ids, num) = paired.into_iter().unzip();
        let size = Units {
            ids,
            statistic: Statistic::Count { num },
        };
        rows.push(Metric::ImprovementSetSize, "all", None, size, is.len());
        let n_max = first_problems
            .iter()
            .map(|(_, p)| p.sampled.len() as u64)
            .max()
            .unwrap_or(0);
        for k in pass_at_k_levels(n_max) {
            // Round 1's pass@k over its problems with k samples, counted for those in IS(t).
            let units = ratio_units(
                first_problems
                    .iter()
                    .filter_map(|(id, p)| {
                        let value = pass_at_k(p.sampled.len() as u64, p.correct_count() as u64, k)?;
                        let member = f64::from(u8::from(is.contains(id)));
                        Some((id.to_string(), member * value, member))
                    })
                    .collect(),
            );
            let counted: Vec<(u64, u64)> = first_problems
                .iter()
                .filter(|(id, p)| is.contains(id) && !p.sampled.is_empty())
                .map(|(_, p)| (p.sampled.len() as u64, p.correct_count() as u64))
                .collect();
            let (value, n) = mean_pass_at_k(&counted, k);
            rows.push(
                Metric::ImprovementSetRound1PassAtK,
                "all",
                Some(k),
                units,
                n,
            );
            rows.out.improvement.push(ImprovementRow {
                task: set.task.clone(),
                split: set.split.clone(),
                round: set.round,
                is_size: is.len(),
                k,
                round1_pass_at_k: value,
            });
        }
    }
}
