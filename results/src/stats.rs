//! Uncertainty of the metrics: a seeded percentile bootstrap over problems (or questions),
//! paired changes between two evaluations of the same problems, the exact McNemar test and
//! the smallest change an evaluation set can detect. Every metric of [`crate::measure`] is
//! a function of per-problem contributions ([`Units`]), so a resample of the problems is a
//! resample of its units and the metric is computed on it the way it is on the data.
//!
//! Checked against scipy's `bootstrap` and statsmodels' `mcnemar` (`tests/stats.rs`, fixture
//! made by `scripts/make_stats_fixture.py`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bootstrap settings: `resamples` = 0 turns intervals off. The seed makes every interval
/// reproducible; each metric row draws from its own stream (the seed and the row's key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    pub resamples: u32,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 1000,
            seed: 0,
        }
    }
}

/// A metric's per-problem contributions.
#[derive(Debug, Clone, PartialEq)]
pub struct Units {
    /// One id per unit (problem or question), to pair two evaluations.
    pub ids: Vec<String>,
    pub statistic: Statistic,
}

/// How a metric follows from its units.
#[derive(Debug, Clone, PartialEq)]
pub enum Statistic {
    /// sum(num) / sum(den): a mean (den = 1), a pooled share, a mean per response.
    Ratio { num: Vec<f64>, den: Vec<f64> },
    /// sum(num): a count (|IS(t)|).
    Count { num: Vec<f64> },
    /// Group disparity (p_low - p_high) / p_low from each unit's side (false: the lowest
    /// level, true: the highest) and greedy outcome; undefined when p_low is 0.
    Disparity { high: Vec<bool>, correct: Vec<bool> },
}

impl Units {
    /// A mean of one value per unit.
    pub fn mean(ids: Vec<String>, values: Vec<f64>) -> Self {
        let den = vec![1.0; values.len()];
        Units {
            ids,
            statistic: Statistic::Ratio { num: values, den },
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The metric on all units, in order.
    pub fn value(&self) -> Option<f64> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.value_at(&all)
    }

    /// The metric on the units at `indices` (repeats allowed: a resample).
    pub fn value_at(&self, indices: &[usize]) -> Option<f64> {
        match &self.statistic {
            Statistic::Ratio { num, den } => {
                let (mut n, mut d) = (0.0, 0.0);
                for &i in indices {
                    n += num[i];
                    d += den[i];
                }
                (d > 0.0).then(|| n / d)
            }
            Statistic::Count { num } => Some(indices.iter().map(|&i| num[i]).sum()),
            Statistic::Disparity { high, correct } => {
                let (mut low_ok, mut low_n, mut high_ok, mut high_n) = (0, 0, 0, 0);
                for &i in indices {
                    match high[i] {
                        false => (low_ok, low_n) = (low_ok + usize::from(correct[i]), low_n + 1),
                        true => (high_ok, high_n) = (high_ok + usize::from(correct[i]), high_n + 1),
                    }
                }
                if low_ok == 0 || high_n == 0 {
                    return None;
                }
                let p_low = low_ok as f64 / low_n as f64;
                Some((p_low - high_ok as f64 / high_n as f64) / p_low)
            }
        }
    }

    /// The units whose ids are in `ids`, in that order (ids missing here are skipped).
    fn restricted_to(&self, ids: &[&str]) -> Units {
        let position: std::collections::HashMap<&str, usize> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let keep: Vec<usize> = ids
            .iter()
            .filter_map(|id| position.get(id).copied())
            .collect();
        let pick_f = |v: &[f64]| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let pick_b = |v: &[bool]| keep.iter().map(|&i| v[i]).collect::<Vec<bool>>();
        Units {
            ids: keep.iter().map(|&i| self.ids[i].clone()).collect(),
            statistic: match &self.statistic {
                Statistic::Ratio { num, den } => Statistic::Ratio {
                    num: pick_f(num),
                    den: pick_f(den),
                },
                Statistic::Count { num } => Statistic::Count { num: pick_f(num) },
                Statistic::Disparity { high, correct } => Statistic::Disparity {
                    high: pick_b(high),
                    correct: pick_b(correct),
                },
            },
        }
    }
}

/// A 64-bit stream seed from the run's seed and a row's key (FNV-1a: stable across builds
/// and platforms, unlike the standard library's hasher).
fn stream_seed(seed: u64, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Draws `resamples` resamples of `n` indices and returns the statistic of each that is
/// defined.
fn resample(
    n: usize,
    bootstrap: Bootstrap,
    key: &str,
    mut statistic: impl FnMut(&[usize]) -> Option<f64>,
) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(stream_seed(bootstrap.seed, key));
    let mut indices = vec![0usize; n];
    let mut values = Vec::with_capacity(bootstrap.resamples as usize);
    for _ in 0..bootstrap.resamples {
        for slot in indices.iter_mut() {
            *slot = rng.random_range(0..n);
        }
        values.extend(statistic(&indices));
    }
    values
}

/// The q-quantile of sorted values, linearly interpolated (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (lower, upper) = (position.floor() as usize, position.ceil() as usize);
    sorted[lower] + (sorted[upper] - sorted[lower]) * (position - lower as f64)
}

/// The central 95% of the resampled values, when at least half the resamples were defined.
fn percentile_interval(mut values: Vec<f64>, resamples: u32) -> Option<(f64, f64)> {
    if values.is_empty() || values.len() * 2 < resamples as usize {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((quantile(&values, 0.025), quantile(&values, 0.975)))
}

/// The 95% percentile-bootstrap interval of a metric; None when intervals are off, there
/// are no units, or the metric is undefined on most resamples. `key` names the row, so
/// each row has its own random stream.
pub fn interval(units: &Units, bootstrap: Bootstrap, key: &str) -> Option<(f64, f64)> {
    if bootstrap.resamples == 0 || units.is_empty() {
        return None;
    }
    let values = resample(units.len(), bootstrap, key, |idx| units.value_at(idx));
    percentile_interval(values, bootstrap.resamples)
}

/// A change between two evaluations of the same problems.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `after - before` on the problems both have.
    pub delta: f64,
    pub before: f64,
    pub after: f64,
    /// The paired 95% bootstrap interval of the change.
    pub interval: Option<(f64, f64)>,
    /// Two-sided p-value: exact McNemar for binary outcomes ([`mcnemar_exact`]), else the
    /// paired bootstrap's (twice the smaller share of resampled changes on either side of 0).
    pub p_value: Option<f64>,
    /// How many problems the change rests on.
    pub n: usize,
}

/// The change from `before` to `after` on the units both have, with its paired interval and
/// p-value. With `binary` (both are means of 0/1 outcomes, i.e. greedy pass@1) the p-value
/// is McNemar's exact test on the discordant problems.
pub fn paired_change(
    before: &Units,
    after: &Units,
    binary: bool,
    bootstrap: Bootstrap,
    key: &str,
) -> Option<Change> {
    let after_ids: std::collections::HashSet<&str> = after.ids.iter().map(String::as_str).collect();
    let common: Vec<&str> = before
        .ids
        .iter()
        .map(String::as_str)
        .filter(|id| after_ids.contains(id))
        .collect();
    let (b, a) = (before.restricted_to(&common), after.restricted_to(&common));
    let (before_value, after_value) = (b.value()?, a.value()?);
    let mut resampled = Vec::new();
    let mut interval = None;
    if bootstrap.resamples > 0 && !common.is_empty() {
        resampled = resample(common.len(), bootstrap, key, |idx| {
            Some(a.value_at(idx)? - b.value_at(idx)?)
        });
        interval = percentile_interval(resampled.clone(), bootstrap.resamples);
    }
    let p_value = match (binary, &b.statistic, &a.statistic) {
        (true, Statistic::Ratio { num: x, .. }, Statistic::Ratio { num: y, .. }) => {
            let gained = x
                .iter()
                .zip(y)
                .filter(|(x, y)| **x < 0.5 && **y >= 0.5)
                .count();
            let lost = x
                .iter()
                .zip(y)
                .filter(|(x, y)| **x >= 0.5 && **y < 0.5)
                .count();
            Some(mcnemar_exact(gained as u64, lost as u64))
        }
        _ if resampled.len() * 2 >= bootstrap.resamples as usize && !resampled.is_empty() => {
            let total = resampled.len() as f64;
            let below = resampled.iter().filter(|d| **d <= 0.0).count() as f64 / total;
            let above = resampled.iter().filter(|d| **d >= 0.0).count() as f64 / total;
            Some((2.0 * below.min(above)).min(1.0))
        }
        _ => None,
    };
    Some(Change {
        delta: after_value - before_value,
        before: before_value,
        after: after_value,
        interval,
        p_value,
        n: common.len(),
    })
}

/// McNemar's exact test: with `b` problems that only the second evaluation solves and `c`
/// that only the first does, twice the binomial(b + c, 1/2) probability of a split at least
/// as uneven, at most 1 (statsmodels' `mcnemar(exact=True)`).
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // log C(n, i) - n log 2, summed in log space (n may be thousands).
    let mut log_term = -(n as f64) * std::f64::consts::LN_2;
    let mut terms = vec![log_term];
    for i in 0..k {
        log_term += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        terms.push(log_term);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// z-values of a two-sided 5% test and of 80% power.
const Z_975: f64 = 1.959_963_984_540_054;
const Z_80: f64 = 0.841_621_233_572_914_3;

/// The smallest change of a share (greedy pass@1) that `n` problems can detect with a
/// two-sided 5% test at 80% power, around a share `p`: (z_0.975 + z_0.8) standard errors of
/// a share on n problems, (1.96 + 0.84) sqrt(p (1 - p) / n). p is clamped to [0.05, 0.95]
/// so that a share of 0 or 1 does not claim that any change is visible.
pub fn detectable_change(p: f64, n: usize) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let p = p.clamp(0.05, 0.95);
    Some((Z_975 + Z_80) * (p * (1.0 - p) / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i}")).collect()
    }

    #[test]
    fn values_follow_the_statistic() {
        let mean = Units::mean(ids(4), vec![1.0, 0.0, 1.0, 1.0]);
        assert_eq!(mean.value(), Some(0.75));
        assert_eq!(mean.value_at(&[1, 1, 0, 1]), Some(0.25));
        let ratio = Units {
            ids: ids(2),
            statistic: Statistic::Ratio {
                num: vec![3.0, 0.0],
                den: vec![4.0, 2.0],
            },
        };
        assert_eq!(ratio.value(), Some(0.5));
        let disparity = Units {
            ids: ids(4),
            statistic: Statistic::Disparity {
                high: vec![false, false, true, true],
                correct: vec![true, false, false, true],
            },
        };
        // p_low 1/2, p_high 1/2: no disparity; all-wrong lowest level: undefined.
        assert_eq!(disparity.value(), Some(0.0));
        assert_eq!(disparity.value_at(&[1, 1, 2, 3]), None);
    }

    #[test]
    fn intervals_are_seeded_and_cover_the_value() {
        let units = Units::mean(ids(50), (0..50).map(|i| f64::from(i % 3 == 0)).collect());
        let b = Bootstrap {
            resamples: 500,
            seed: 7,
        };
        let first = interval(&units, b, "row").unwrap();
        assert_eq!(interval(&units, b, "row"), Some(first));
        assert_ne!(interval(&units, b, "another row"), Some(first));
        let value = units.value().unwrap();
        assert!(first.0 < value && value < first.1, "{first:?} {value}");
        let off = Bootstrap {
            resamples: 0,
            seed: 7,
        };
        assert_eq!(interval(&units, off, "row"), None);
    }

    #[test]
    fn mcnemar_small_cases_by_hand() {
        // b = 0, c = 3: 2 * 0.5^3.
        assert!((mcnemar_exact(0, 3) - 0.25).abs() < 1e-15);
        // b = 1, c = 4: 2 * (1 + 5) / 32.
        assert!((mcnemar_exact(4, 1) - 0.375).abs() < 1e-15);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert!(mcnemar_exact(0, 2000) < 1e-300);
    }

    #[test]
    fn detectable_change_shrinks_with_the_square_root_of_n() {
        let at20 = detectable_change(0.3, 20).unwrap();
        let at200 = detectable_change(0.3, 200).unwrap();
        assert!((at20 - 0.287).abs() < 0.001, "{at20}");
        assert!((at20 / at200 - 10f64.sqrt()).abs() < 1e-9);
        assert_eq!(detectable_change(0.5, 0), None);
    }
}
