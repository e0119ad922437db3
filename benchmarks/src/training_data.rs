//! The data sets of the self-improvement loop (SPEC.md, Algorithm 1), built from problems and
//! graded samples and written in the JSON Lines formats TRL reads (and `harness train`), so
//! any round can be trained again elsewhere:
//!
//! - round 1: the gold pairs, `{"prompt", "completion"}` with the task's gold solution;
//! - SFT rounds: each question's correct responses, exact duplicates removed;
//! - DPO rounds: `{"prompt", "chosen", "rejected"}`, a question's correct and incorrect
//!   responses shuffled (seeded) and zipped, at most `max_pairs` per question.
//!
//! A response that stopped at the token limit never enters a data set: it is cut off, so it
//! would teach the model to stop mid-answer (SFT) or to prefer a fragment (DPO).
//! Every record also carries `problem_id`, which TRL and `harness train` ignore.

use std::collections::{HashMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{BenchError, Result};
use crate::problem::Problem;
use crate::prompt::{Prompt, PromptStyle, Template};
use crate::sample::Sample;

/// One supervised example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SftRecord {
    pub problem_id: String,
    pub prompt: Prompt,
    pub completion: String,
}

/// One preference pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreferenceRecord {
    pub problem_id: String,
    pub prompt: Prompt,
    pub chosen: String,
    pub rejected: String,
}

/// The gold pairs of round 1: each problem's prompt with its gold solution.
pub fn gold_sft(problems: &[Problem], template: &Template, style: PromptStyle) -> Vec<SftRecord> {
    problems
        .iter()
        .map(|p| SftRecord {
            problem_id: p.id.clone(),
            prompt: template.render(p, style),
            completion: p.solution.clone(),
        })
        .collect()
}

/// Whether a graded response may enter a data set, and whether it is correct.
fn usable(sample: &Sample) -> Result<Option<bool>> {
    let Some(correct) = sample.correct else {
        return Err(BenchError::Invalid(format!(
            "problem {} sample {:?}: not graded",
            sample.problem_id, sample.sample_index
        )));
    };
    Ok((sample.finish_reason.as_deref() != Some("length")).then_some(correct))
}

/// A question's responses in first-seen order, split into correct and incorrect, each
/// without exact duplicates.
struct Question<'a> {
    id: &'a str,
    prompt: &'a Prompt,
    correct: Vec<&'a str>,
    incorrect: Vec<&'a str>,
}

fn questions(samples: &[Sample]) -> Result<Vec<Question<'_>>> {
    let mut order: Vec<Question> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for sample in samples {
        let Some(correct) = usable(sample)? else {
            continue;
        };
        let prompt = sample.prompt.as_ref().ok_or_else(|| {
            BenchError::Invalid(format!(
                "problem {} sample {:?}: no prompt recorded",
                sample.problem_id, sample.sample_index
            ))
        })?;
        let i = *at.entry(&sample.problem_id).or_insert_with(|| {
            order.push(Question {
                id: &sample.problem_id,
                prompt,
                correct: Vec::new(),
                incorrect: Vec::new(),
            });
            order.len() - 1
        });
        if !seen.insert((&sample.problem_id, &sample.response)) {
            continue;
        }
        match correct {
            true => order[i].correct.push(&sample.response),
            false => order[i].incorrect.push(&sample.response),
        }
    }
    Ok(order)
}

/// SFT's D_t: every question's correct responses, exact duplicates within a question removed.
pub fn sft_from_samples(samples: &[Sample]) -> Result<Vec<SftRecord>> {
    Ok(questions(samples)?
        .into_iter()
        .flat_map(|q| {
            q.correct.into_iter().map(move |c| SftRecord {
                problem_id: q.id.to_string(),
                prompt: q.prompt.clone(),
                completion: c.to_string(),
            })
        })
        .collect())
}

/// DPO's D_t: per question, its correct and incorrect responses (duplicates removed)
/// shuffled with a seed of `seed` and the question id, then zipped: min(#correct,
/// #incorrect) pairs, at most `max_pairs`. A question with no correct or no incorrect
/// response gives none.
pub fn dpo_pairs(samples: &[Sample], max_pairs: usize, seed: u64) -> Result<Vec<PreferenceRecord>> {
    let mut out = Vec::new();
    for mut q in questions(samples)? {
        let mut rng = question_rng(seed, q.id);
        q.correct.shuffle(&mut rng);
        q.incorrect.shuffle(&mut rng);
        for (chosen, rejected) in q.correct.iter().zip(&q.incorrect).take(max_pairs) {
            out.push(PreferenceRecord {
                problem_id: q.id.to_string(),
                prompt: q.prompt.clone(),
                chosen: chosen.to_string(),
                rejected: rejected.to_string(),
            });
        }
    }
    Ok(out)
}

/// A generator seeded by the run's seed and the question, so a question's pairs do not
/// depend on which other questions are in the data set.
fn question_rng(seed: u64, id: &str) -> ChaCha8Rng {
    let mut hash = Sha256::new();
    hash.update(seed.to_le_bytes());
    hash.update(id.as_bytes());
    ChaCha8Rng::from_seed(hash.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::Message;

    fn sample(id: &str, j: u32, response: &str, correct: bool, finish: &str) -> Sample {
        Sample {
            problem_id: id.into(),
            sample_index: Some(j),
            prompt: Some(Prompt::Chat(vec![Message {
                role: "user".into(),
                content: format!("question {id}"),
            }])),
            response: response.into(),
            correct: Some(correct),
            finish_reason: Some(finish.into()),
            ..Sample::default()
        }
    }

    fn mixed() -> Vec<Sample> {
        vec![
            sample("a", 0, "right 1", true, "stop"),
            sample("a", 1, "wrong 1", false, "stop"),
            sample("a", 2, "right 1", true, "stop"),
            sample("a", 3, "right 2", true, "stop"),
            sample("a", 4, "right cut", true, "length"),
            sample("a", 5, "wrong 2", false, "stop"),
            sample("a", 6, "wrong 3", false, "stop"),
            sample("b", 0, "wrong b", false, "stop"),
            sample("c", 0, "right c", true, "stop"),
        ]
    }

    #[test]
    fn sft_keeps_correct_responses_once_and_never_cut_ones() {
        let records = sft_from_samples(&mixed()).unwrap();
        let got: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.problem_id.as_str(), r.completion.as_str()))
            .collect();
        assert_eq!(got, [("a", "right 1"), ("a", "right 2"), ("c", "right c")]);
        assert_eq!(
            records[0].prompt,
            mixed()[0].prompt.clone().unwrap(),
            "the sampled prompt is the training prompt"
        );
    }

    #[test]
    fn dpo_pairs_a_questions_correct_with_its_incorrect_responses() {
        let samples = mixed();
        let pairs = dpo_pairs(&samples, 5, 7).unwrap();
        // a: 2 distinct usable correct, 3 incorrect -> 2 pairs; b, c: one side empty.
        assert_eq!(pairs.len(), 2);
        let mut chosen: Vec<&str> = pairs.iter().map(|p| p.chosen.as_str()).collect();
        chosen.sort();
        assert_eq!(chosen, ["right 1", "right 2"]);
        for p in &pairs {
            assert_eq!(p.problem_id, "a");
            assert!(p.rejected.starts_with("wrong"), "{p:?}");
        }
        assert_ne!(pairs[0].rejected, pairs[1].rejected);
        assert_eq!(dpo_pairs(&samples, 1, 7).unwrap().len(), 1, "capped");
    }

    #[test]
    fn dpo_pairing_is_seeded_and_independent_of_other_questions() {
        let many: Vec<Sample> = (0..6)
            .flat_map(|j| {
                [
                    sample("q", j, &format!("right {j}"), true, "stop"),
                    sample("q", 10 + j, &format!("wrong {j}"), false, "stop"),
                ]
            })
            .collect();
        let key = |pairs: Vec<PreferenceRecord>| -> Vec<(String, String)> {
            pairs.into_iter().map(|p| (p.chosen, p.rejected)).collect()
        };
        let first = key(dpo_pairs(&many, 5, 1).unwrap());
        assert_eq!(first, key(dpo_pairs(&many, 5, 1).unwrap()));
        let seeds_differ = (2..10).any(|s| key(dpo_pairs(&many, 5, s).unwrap()) != first);
        assert!(seeds_differ, "the seed changes the pairing");
        let mut with_other = mixed();
        with_other.extend(many.clone());
        // Question a's two pairs come first; q's follow, the same as alone.
        let only_q: Vec<(String, String)> = key(dpo_pairs(&with_other, 5, 1).unwrap())
            .into_iter()
            .skip(2)
            .collect();
        assert_eq!(only_q, first);
    }

    #[test]
    fn ungraded_samples_are_refused() {
        let mut s = mixed();
        s[1].correct = None;
        let err = sft_from_samples(&s).unwrap_err().to_string();
        assert!(
            err.contains("problem a sample Some(1): not graded"),
            "{err}"
        );
    }
}
