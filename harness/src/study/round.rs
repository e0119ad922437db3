//! One round: M1 from the gold pairs, D_t from M_{t-1}'s graded samples of the training
//! questions (or the model carried over when D_t is empty), and the sampling step: every
//! evaluation set and, before the last round, the training questions, in one call of the
//! engine, graded.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use benchmarks::training_data::{dpo_pairs, gold_sft, sft_from_samples};

use super::flags::{LoopMethod, RunArgs};
use super::serve::{Checkpoint, Engine};
use super::setup::{Loop, adapter_rounds};
use super::train::AdapterForms;
use crate::engine::backend_name;
use crate::evaluate::{self, Plan, Settings};
use crate::progress;

/// Seeds of round t's training samples start here times t (sample j: `seed + OFFSET t + j`).
const TRAIN_SEED_OFFSET: u64 = 1_000_000;

impl Loop<'_> {
    /// M1: the given folder, or SFT of M0 on the gold pairs.
    pub(super) fn m1(&mut self, engine: &mut Engine) -> Result<PathBuf> {
        if let Some(dir) = &self.args.m1 {
            check_m1(self.args, dir)?;
            return Ok(dir.clone());
        }
        let round = self.dir.round(LoopMethod::Sft, 1);
        let data = round.join("gold.jsonl");
        if !data.exists() {
            std::fs::create_dir_all(&round)?;
            let gold = self.gold_problems.as_ref().unwrap_or(&self.train_problems);
            let records = gold_sft(gold, self.template, self.style);
            benchmarks::write_jsonl(&data, &records)?;
        }
        self.train(engine, (1, &round), &data, false, None)?;
        Ok(round.join("model"))
    }

    /// Builds D_t from M_{t-1}'s training samples and trains M_t; returns M_t's folder.
    pub(super) fn train_round(
        &mut self,
        engine: &mut Engine,
        method: LoopMethod,
        round: u32,
    ) -> Result<PathBuf> {
        let dir = self.dir.round(method, round);
        let previous = self.model_dir(method, round - 1);
        if dir.join("model").exists() {
            return Ok(dir.join("model"));
        }
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data.jsonl");
        let dpo = method.dpo_at(round);
        if !data.exists() {
            let samples = benchmarks::read_samples(
                &self
                    .dir
                    .round(method, round - 1)
                    .join("train_samples.jsonl"),
            )?;
            let count = if dpo {
                let seed = self
                    .args
                    .training
                    .settings
                    .train_seed
                    .wrapping_add(u64::from(round));
                let pairs = dpo_pairs(&samples, self.args.max_pairs, seed)?;
                benchmarks::write_jsonl(&data, &pairs)?;
                pairs.len()
            } else {
                let records = sft_from_samples(&samples)?;
                benchmarks::write_jsonl(&data, &records)?;
                records.len()
            };
            progress::phase(&format!(
                "{} round {round}: D_{round} has {count} {}",
                method.name(),
                if dpo { "pairs" } else { "examples" }
            ));
        }
        if std::fs::metadata(&data)?.len() == 0 {
            // Nothing to learn from (no correct response, or no question with both kinds):
            // M_t is M_{t-1}, and the round says so.
            progress::phase(&format!(
                "{} round {round}: empty data set, the model carries over unchanged",
                method.name()
            ));
            carry_over(&previous, &dir.join("model"))?;
            return Ok(dir.join("model"));
        }
        self.train(engine, (round, &dir), &data, dpo, Some(&previous))?;
        Ok(dir.join("model"))
    }

    /// Evaluates M_round (greedy + n_eval samples on every evaluation set) and, before the
    /// last round, samples the training questions, in one batch for the engine.
    pub(super) fn sample_round(
        &mut self,
        engine: &mut Engine,
        model: Option<&Path>,
        method: LoopMethod,
        round: u32,
    ) -> Result<()> {
        let dir = self.dir.round(method, round);
        std::fs::create_dir_all(dir.join("eval"))?;
        let mut plans: Vec<Plan> = self
            .eval_sets
            .iter()
            .map(|(set, task, template, problems)| Plan {
                task,
                split: set.split.clone(),
                template,
                problems: problems.clone(),
                file: dir.join("eval").join(set.file_name()),
                round,
                greedy: true,
                n: self.args.n_eval,
                seed: self.args.seed,
                max_tokens: set.max_tokens,
            })
            .collect();
        if round >= 1 && round < self.args.rounds {
            plans.push(Plan {
                task: self.task,
                split: self.settings.train_split.clone(),
                template: self.template,
                problems: self.train_problems.clone(),
                file: dir.join("train_samples.jsonl"),
                round,
                greedy: false,
                n: self.args.n_train,
                seed: self
                    .args
                    .seed
                    .wrapping_add(TRAIN_SEED_OFFSET * u64::from(round)),
                max_tokens: self.settings.max_tokens,
            });
        }
        let label = dir
            .strip_prefix(self.dir.root())
            .unwrap_or(&dir)
            .display()
            .to_string();
        let checkpoint = Checkpoint::new(round, method, model);
        let outcome = evaluate::sample_and_grade(
            engine.with(&checkpoint)?,
            &plans,
            &self.sampling_settings(),
            self.sandbox.as_ref(),
            &label,
        )?;
        self.phases.sampling += outcome.sampling_seconds;
        self.phases.grading += outcome.grading_seconds;
        if outcome.new_tokens > 0 {
            progress::phase(&format!(
                "{label}: {} new tokens in {:.0} s ({:.1} tok/s)",
                outcome.new_tokens,
                outcome.sampling_seconds,
                outcome.new_tokens as f64 / outcome.sampling_seconds.max(1e-9)
            ));
            self.dir.record_phase(&serde_json::json!({
                "step": label,
                "method": method.name(),
                "round": round,
                "phase": "sampling",
                "seconds": outcome.sampling_seconds,
                "new_tokens": outcome.new_tokens,
            }))?;
        }
        Ok(())
    }

    fn sampling_settings(&self) -> Settings {
        let a = self.args;
        let sampled = backends::Sampling {
            temperature: a.temperature,
            top_p: a.top_p,
            top_k: a.top_k,
            min_p: a.min_p,
            max_tokens: self.settings.max_tokens,
            stop: Vec::new(),
            ignore_eos: false,
        };
        Settings::new(self.style, sampled, backend_name(a.backend))
    }
}

/// A given `--m1` folder holds what the loop samples and continues: adapter.gguf (LoRA runs
/// over the embedded engine), model.gguf, and the PEFT adapter/ where a server or an external
/// trainer reads it.
pub(super) fn check_m1(args: &RunArgs, dir: &Path) -> Result<()> {
    let sampled = match adapter_rounds(args) {
        true => "adapter.gguf",
        false => "model.gguf",
    };
    if !dir.join(sampled).exists() {
        bail!(
            "--m1 {}: no {sampled} in it (harness train writes adapter.gguf, the LoRA as \
             llama.cpp applies it, since the loop samples M0 with each round's adapter)",
            dir.display()
        );
    }
    // A round that does not continue adapter.gguf continues (and a server samples) adapter/.
    let peft_read = !AdapterForms::of(args).continue_sampled;
    if !args.training.settings.full && peft_read && !dir.join("adapter").exists() {
        bail!(
            "--m1 {}: this loop reads M1's PEFT adapter (a server samples it, an external \
             trainer continues it), and this folder has no adapter/ (give --full to continue a \
             fully fine-tuned M1)",
            dir.display()
        );
    }
    Ok(())
}

/// M_t = M_{t-1}: the previous model folder's files, hard-linked where possible.
fn carry_over(previous: &Path, out: &Path) -> Result<()> {
    let partial = out.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    copy_tree(previous, &partial)?;
    std::fs::rename(&partial, out)?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
