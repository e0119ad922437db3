//! Token sampling from one sequence's logits, with llama-server's semantics and order
//! (top-k, then top-p and min-p on the untempered distribution, then temperature, then a
//! seeded draw), computed without sorting the whole vocabulary.
//!
//! Why not llama.cpp's own sampler chain: it builds and sorts a 49k-entry candidate array
//! per token for top-p, which cost more per decoding step here than the forward pass of
//! eight sequences of the default model. Top-p here looks first at the tokens within 5 of the
//! best logit, then 10, then 20, then the whole vocabulary, sorting the best 64 of them, then
//! 256, ... until their mass reaches p; the nucleus is exactly that of a full sort
//! (llama.cpp's).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::request::Sampling;

/// Logit distances below the best token within which top-p looks for the nucleus, in turn.
const WINDOWS: [f32; 3] = [5.0, 10.0, 20.0];

/// One sequence's sampler.
pub(super) enum Sampler {
    /// The arg-max (the first, on ties, as llama.cpp's greedy sampler).
    Greedy,
    Random {
        top_k: usize,
        top_p: f32,
        min_p: f32,
        temperature: f32,
        rng: Box<ChaCha8Rng>,
    },
}

impl Sampler {
    pub(super) fn new(sampling: &Sampling, seed: u64) -> Self {
        if sampling.is_greedy() {
            return Sampler::Greedy;
        }
        Sampler::Random {
            top_k: sampling.top_k as usize,
            top_p: sampling.top_p,
            min_p: sampling.min_p,
            temperature: sampling.temperature,
            rng: Box::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The next token id.
    pub(super) fn sample(&mut self, logits: &[f32]) -> usize {
        match self {
            Sampler::Greedy => argmax(logits),
            Sampler::Random {
                top_k,
                top_p,
                min_p,
                temperature,
                rng,
            } => {
                let candidates = filter(logits, *top_k, *top_p, *min_p);
                draw(&candidates, *temperature, rng.random::<f64>())
            }
        }
    }
}

fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// The candidates (token, logit) left by top-k, top-p and min-p, best first.
fn filter(logits: &[f32], top_k: usize, top_p: f32, min_p: f32) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut candidates: Vec<(usize, f32)>;
    if top_k > 0 && top_k < logits.len() {
        candidates = logits.iter().copied().enumerate().collect();
        candidates.select_nth_unstable_by(top_k - 1, best_first);
        candidates.truncate(top_k);
        candidates.sort_unstable_by(best_first);
        if top_p < 1.0 {
            // Probabilities over what top-k left.
            let total = candidates.iter().map(|(_, l)| weight(*l, max)).sum();
            let keep = nucleus(&candidates, max, total, top_p).unwrap_or(candidates.len());
            candidates.truncate(keep);
        }
    } else if top_p < 1.0 {
        candidates = top_p_nucleus(logits, max, top_p);
    } else {
        candidates = logits.iter().copied().enumerate().collect();
        candidates.sort_unstable_by(best_first);
    }
    if min_p > 0.0 {
        let floor = max + min_p.ln();
        let kept = candidates
            .iter()
            .take_while(|(_, l)| *l >= floor)
            .count()
            .max(1);
        candidates.truncate(kept);
    }
    candidates
}

/// The top-p nucleus over the whole vocabulary, best first. The tokens within 5 of the best
/// logit come first in the full sort, so if their mass reaches p the nucleus lies among them
/// (usually a few tokens); else within 10, then 20, then everything (which keeps all tokens
/// when rounding leaves their mass short of p).
fn top_p_nucleus(logits: &[f32], max: f32, top_p: f32) -> Vec<(usize, f32)> {
    let total: f64 = logits.iter().map(|l| weight(*l, max)).sum();
    for width in WINDOWS {
        let mut candidates = window(logits, max - width);
        if let Some(keep) = best_prefix(&mut candidates, max, total, top_p) {
            candidates.truncate(keep);
            return candidates;
        }
    }
    let mut candidates: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
    let keep = best_prefix(&mut candidates, max, total, top_p).unwrap_or(candidates.len());
    candidates.truncate(keep);
    candidates
}

/// The order of the full sort: higher logit first, lower token id first on ties.
fn best_first(a: &(usize, f32), b: &(usize, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// A token's unnormalised probability: exp in f32 (as llama.cpp's softmax), summed in f64.
fn weight(logit: f32, max: f32) -> f64 {
    f64::from((logit - max).exp())
}

/// Sorts the best candidates until their mass reaches p, without sorting the rest: the best
/// 64 are selected and sorted, then 256, 1024, ... Returns the nucleus length, as
/// [`nucleus`] on the fully sorted candidates would, or None when all of them fall short of p.
fn best_prefix(candidates: &mut [(usize, f32)], max: f32, total: f64, top_p: f32) -> Option<usize> {
    let mut k = 64;
    loop {
        if k >= candidates.len() {
            candidates.sort_unstable_by(best_first);
            return nucleus(candidates, max, total, top_p);
        }
        candidates.select_nth_unstable_by(k - 1, best_first);
        candidates[..k].sort_unstable_by(best_first);
        if let Some(keep) = nucleus(&candidates[..k], max, total, top_p) {
            return Some(keep);
        }
        k *= 4;
    }
}

/// Tokens whose logit is at least `floor`.
fn window(logits: &[f32], floor: f32) -> Vec<(usize, f32)> {
    logits
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, l)| *l >= floor)
        .collect()
}

/// How many of the sorted candidates the nucleus keeps: the shortest prefix whose
/// probability reaches p (at least one). None when the candidates do not reach p.
fn nucleus(sorted: &[(usize, f32)], max: f32, total: f64, top_p: f32) -> Option<usize> {
    let mut mass = 0.0;
    for (i, (_, l)) in sorted.iter().enumerate() {
        mass += weight(*l, max) / total;
        if mass >= f64::from(top_p) {
            return Some(i + 1);
        }
    }
    None
}

/// Draws from the softmax of the candidates' logits divided by the temperature; `u` is
/// uniform in [0, 1).
fn draw(candidates: &[(usize, f32)], temperature: f32, u: f64) -> usize {
    let max = candidates[0].1;
    let weights: Vec<f64> = candidates
        .iter()
        .map(|(_, l)| f64::from((l - max) / temperature).exp())
        .collect();
    let target = u * weights.iter().sum::<f64>();
    let mut cumulative = 0.0;
    for ((token, _), w) in candidates.iter().zip(&weights) {
        cumulative += w;
        if target < cumulative {
            return *token;
        }
    }
    candidates[candidates.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: everything sorted, as llama.cpp does.
    fn slow_filter(logits: &[f32], top_p: f32) -> Vec<usize> {
        let mut all: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let max = all[0].1;
        let total: f64 = all.iter().map(|(_, l)| f64::from((l - max).exp())).sum();
        let mut mass = 0.0;
        let mut out = Vec::new();
        for (t, l) in all {
            out.push(t);
            mass += f64::from((l - max).exp()) / total;
            if mass >= f64::from(top_p) {
                break;
            }
        }
        out
    }

    #[test]
    fn nucleus_equals_the_full_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for case in 0..200 {
            // Peaked, flat and in-between distributions over a 5000-token vocabulary.
            let scale = [0.01f32, 1.0, 5.0, 30.0][case % 4];
            let logits: Vec<f32> = (0..5000).map(|_| rng.random::<f32>() * scale).collect();
            for p in [0.5, 0.9, 0.95, 0.999] {
                let fast: Vec<usize> = filter(&logits, 0, p, 0.0).iter().map(|c| c.0).collect();
                assert_eq!(fast, slow_filter(&logits, p), "case {case} p {p}");
            }
        }
    }

    #[test]
    fn top_k_min_p_and_greedy() {
        let logits = [1.0, 5.0, 3.0, 5.0, -2.0];
        assert_eq!(argmax(&logits), 1);
        let k2: Vec<usize> = filter(&logits, 2, 1.0, 0.0).iter().map(|c| c.0).collect();
        assert_eq!(k2, vec![1, 3]);
        // min-p 0.1 keeps logits >= 5 + ln 0.1 = 2.70: tokens 1, 3, 2.
        let m: Vec<usize> = filter(&logits, 0, 1.0, 0.1).iter().map(|c| c.0).collect();
        assert_eq!(m, vec![1, 3, 2]);
    }

    #[test]
    fn draws_follow_the_tempered_distribution_and_the_seed() {
        let candidates = [(7, 0.0f32), (9, -(3f32.ln()))]; // probabilities 3/4 and 1/4
        assert_eq!(draw(&candidates, 1.0, 0.74), 7);
        assert_eq!(draw(&candidates, 1.0, 0.76), 9);
        let sampling = Sampling {
            temperature: 0.8,
            top_p: 0.95,
            ..Sampling::default()
        };
        let logits: Vec<f32> = (0..1000).map(|i| (i % 17) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(&sampling, seed);
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
