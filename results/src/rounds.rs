//! Metrics that compare rounds or describe round 1 (SPEC.md): correct answer coverage and
//! the improvement set.

use std::collections::BTreeMap;

/// Correct answer coverage of a set of samples (the study computes it for M1 on the
/// training questions; the rule of thumb: above 0.5 DPO-style methods win, below it
/// iterative SFT).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Correct samples / all samples.
    pub pooled: f64,
    /// Mean over questions of each question's correct fraction.
    pub per_question_mean: f64,
    pub questions: usize,
    pub samples: usize,
}

/// Coverage from (correct, total) per question; questions with no sample are skipped.
/// None when there is no sample at all.
pub fn coverage(per_question: &[(usize, usize)]) -> Option<Coverage> {
    let asked: Vec<&(usize, usize)> = per_question.iter().filter(|(_, n)| *n > 0).collect();
    let samples: usize = asked.iter().map(|(_, n)| n).sum();
    if samples == 0 {
        return None;
    }
    let correct: usize = asked.iter().map(|(c, _)| c).sum();
    let mean = asked
        .iter()
        .map(|(c, n)| *c as f64 / *n as f64)
        .sum::<f64>()
        / asked.len() as f64;
    Some(Coverage {
        pooled: correct as f64 / samples as f64,
        per_question_mean: mean,
        questions: asked.len(),
        samples,
    })
}

/// The improvement set IS(t): problems that round t solves greedily and round 1 does not
/// (both maps: problem id -> greedy correct). Problems missing from round 1 are left out.
pub fn improvement_set<'a>(
    round_one: &BTreeMap<&'a str, bool>,
    round_t: &BTreeMap<&'a str, bool>,
) -> Vec<&'a str> {
    round_t
        .iter()
        .filter(|(id, solved)| **solved && round_one.get(*id) == Some(&false))
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_pooled_and_per_question() {
        // 3/4 and 0/2: pooled 3/6, per-question mean (0.75 + 0) / 2; an unasked question
        // does not count.
        let c = coverage(&[(3, 4), (0, 2), (0, 0)]).unwrap();
        assert_eq!(
            (c.pooled, c.per_question_mean, c.questions, c.samples),
            (0.5, 0.375, 2, 6)
        );
        assert_eq!(coverage(&[(2, 2)]).unwrap().pooled, 1.0);
        assert_eq!(coverage(&[(0, 0)]), None);
        assert_eq!(coverage(&[]), None);
    }

    #[test]
    fn improvement_set_is_new_greedy_solutions_only() {
        let one = BTreeMap::from([("a", false), ("b", true), ("c", false), ("d", false)]);
        let t = BTreeMap::from([("a", true), ("b", true), ("c", false), ("e", true)]);
        assert_eq!(improvement_set(&one, &t), vec!["a"]);
        assert!(improvement_set(&one, &one).is_empty());
    }
}
