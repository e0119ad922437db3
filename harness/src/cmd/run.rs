//! `harness run`: the self-improvement loop of SPEC.md (Algorithm 1), end to end.
//!
//! Round 1: M1 = SFT of M0 on the gold pairs (or `--m1`). Every round t: evaluate M_t on the
//! evaluation split and the OOD sets; for t < T, sample the training questions, grade, build
//! D_t, train M_{t+1} from M_t. The methods share rounds 0 and 1. After each round the
//! method's reports are rewritten and a per-round table is printed. Every step writes
//! atomically and is skipped when its output exists (see `loop_dir`), so the same command
//! continues a stopped run and ends with the same files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use benchmarks::training_data::{dpo_pairs, gold_sft, sft_from_samples};
use benchmarks::{Problem, PromptStyle, Sandbox, Task, Template};

use super::run_args::{DpoReference, LoopMethod, RunArgs, TrainerKind};
use crate::cli::BackendKind;
use crate::cmd::grade::sandbox_config;
use crate::engine::{backend_name, flash_attention};
use crate::evaluate::{self, Plan, Settings, evenly_spaced};
use crate::loop_dir::{EvalSet, LoopDir, LoopSettings, read_settings};
use crate::loop_train::{RoundJob, candle_job, m1_reference, run_external};
use crate::progress;
use crate::reports::{ReportOptions, ReportSettings, dir_name, report_files};
use crate::round_table;
use crate::serving::{Checkpoint, Engine};

/// Seeds of round t's training samples start here times t (sample j: `seed + OFFSET t + j`).
const TRAIN_SEED_OFFSET: u64 = 1_000_000;

pub fn run(args: RunArgs) -> Result<()> {
    trainer::process::prepare_for_training();
    if let Some(threads) = args.training.train_threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("setting the trainer's thread count")?;
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if (args.training.trainer == TrainerKind::External) != args.training.train_cmd.is_some() {
        bail!("--trainer external and --train-cmd CMD go together");
    }
    let m0 = match (&args.model, args.backend) {
        (Some(path), _) => PathBuf::from(path),
        (None, BackendKind::Llamacpp) => backends::models::ensure(&backends::models::SMOLLM2_135M)?,
        (None, BackendKind::Openai) => bail!(
            "--backend openai needs --model: M0's local path (a GGUF, or the folder the server \
             was started with), which the trainer reads"
        ),
    };
    let out = args.out.clone().unwrap_or_else(default_out);
    let mut engine = Engine::new(&args, m0.clone(), &out)?;
    let run = Loop::new(&args, m0, engine.identity()?, out)?;
    eprintln!("run directory: {}", run.dir.root().display());
    run.execute(&mut engine)
}

/// A loop's fixed inputs: settings, problems and the directory.
struct Loop<'a> {
    args: &'a RunArgs,
    settings: LoopSettings,
    dir: LoopDir,
    task: &'static Task,
    template: &'static Template,
    style: PromptStyle,
    m0: PathBuf,
    train_problems: Vec<Problem>,
    /// The evaluation split first, then the OOD sets, with their problems.
    eval_sets: Vec<(EvalSet, &'static Task, &'static Template, Vec<Problem>)>,
    sandbox: Option<Sandbox>,
    phases: Phases,
    /// Each method's latest measures, for the comparisons between methods.
    measures: Vec<(LoopMethod, results::Measures)>,
}

impl<'a> Loop<'a> {
    fn new(args: &'a RunArgs, m0: PathBuf, model_id: String, out: PathBuf) -> Result<Self> {
        let task = benchmarks::task(&args.task)?;
        let train_split = task
            .train_split
            .with_context(|| format!("task {} has no training split", task.name))?;
        let source = args.data.source();
        let template = benchmarks::prompt::template(task.template)?;
        let train_problems = evenly_spaced(
            task.load(train_split, &source, args.data.seed)?,
            args.train_limit,
        );
        let eval = EvalSet {
            task: task.name.into(),
            split: task.eval_split.into(),
            max_tokens: args.max_tokens.unwrap_or(task.max_tokens),
        };
        let ood = ood_sets(task, &args.ood, args.max_tokens)?;
        let mut eval_sets = Vec::new();
        for (set, limit) in
            std::iter::once((&eval, args.eval_limit)).chain(ood.iter().map(|s| (s, args.ood_limit)))
        {
            let t = benchmarks::task(&set.task)?;
            let problems = evenly_spaced(t.load(&set.split, &source, args.data.seed)?, limit);
            let tpl = benchmarks::prompt::template(t.template)?;
            eval_sets.push((set.clone(), t, tpl, problems));
        }
        let settings = LoopSettings {
            task: task.name.into(),
            task_version: task.version,
            train_split: train_split.into(),
            eval,
            ood,
            methods: args.method.clone(),
            rounds: args.rounds,
            backend: backend_name(args.backend).into(),
            model: model_id,
            model_path: m0.display().to_string(),
            m1: args.m1.clone(),
            eval_base: args.eval_base,
            train_limit: args.train_limit,
            eval_limit: args.eval_limit,
            ood_limit: args.ood_limit,
            n_train: args.n_train,
            n_eval: args.n_eval,
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            min_p: args.min_p,
            max_tokens: args.max_tokens.unwrap_or(task.max_tokens),
            seed: args.seed,
            style: format!("{:?}", args.style).to_lowercase(),
            max_pairs: args.max_pairs,
            dpo_ref: args.dpo_ref,
            arith_seed: args.data.seed,
            flash_attention: flash_attention(args.backend, &args.llamacpp).map(String::from),
            training: args.training.clone(),
        };
        let dir = LoopDir::open(&out, &settings)?;
        report_settings(args).record(dir.root())?;
        let needs_sandbox = eval_sets
            .iter()
            .any(|(_, t, _, _)| t.grader == benchmarks::GraderKind::Code);
        let sandbox = match needs_sandbox {
            true => Some(Sandbox::new(sandbox_config(&args.sandbox))?),
            false => None,
        };
        Ok(Loop {
            args,
            settings,
            dir,
            task,
            template,
            style: args.style.into(),
            m0,
            train_problems,
            eval_sets,
            sandbox,
            phases: Phases::default(),
            measures: Vec::new(),
        })
    }

    fn execute(mut self, engine: &mut Engine) -> Result<()> {
        let started = Instant::now();
        let methods = self.args.method.clone();
        let first = methods[0];
        if self.args.eval_base {
            self.sample_round(engine, None, first, 0)?;
        }
        let m1 = self.m1(engine)?;
        self.sample_round(engine, Some(&m1), first, 1)?;
        for &method in &methods {
            self.report(method, 1)?;
        }
        for round in 2..=self.args.rounds {
            for &method in &methods {
                let model = self.train_round(engine, method, round)?;
                self.sample_round(engine, Some(&model), method, round)?;
                self.report(method, round)?;
            }
        }
        self.phases.print(started.elapsed().as_secs_f64());
        for &method in &methods {
            println!(
                "{}: reports in {}",
                method.name(),
                self.dir.reports(method).display()
            );
        }
        Ok(())
    }

    /// M1: the given folder, or SFT of M0 on the gold pairs.
    fn m1(&mut self, engine: &mut Engine) -> Result<PathBuf> {
        if let Some(dir) = &self.args.m1 {
            if !dir.join("model.gguf").exists() {
                bail!("--m1 {}: no model.gguf in it", dir.display());
            }
            if !self.args.training.full && !dir.join("adapter").exists() {
                bail!(
                    "--m1 {}: a LoRA loop continues M1's adapter, and this folder has no adapter/ \
                     (give --full to continue a fully fine-tuned M1)",
                    dir.display()
                );
            }
            return Ok(dir.clone());
        }
        let round = self.dir.round(LoopMethod::Sft, 1);
        let data = round.join("gold.jsonl");
        if !data.exists() {
            std::fs::create_dir_all(&round)?;
            let records = gold_sft(&self.train_problems, self.template, self.style);
            benchmarks::write_jsonl(&data, &records)?;
        }
        self.train(engine, (1, &round), &data, false, None)?;
        Ok(round.join("model"))
    }

    /// Builds D_t from M_{t-1}'s training samples and trains M_t; returns M_t's folder.
    fn train_round(
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
                let seed = self.args.training.train_seed.wrapping_add(u64::from(round));
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

    /// The folder of M_round for a method.
    fn model_dir(&self, method: LoopMethod, round: u32) -> PathBuf {
        match (round, &self.args.m1) {
            (1, Some(m1)) => m1.clone(),
            _ => self.dir.round(method, round).join("model"),
        }
    }

    /// Trains into `round/model` (through `round/model.partial`, renamed when done).
    fn train(
        &mut self,
        engine: &mut Engine,
        (number, round): (u32, &Path),
        data: &Path,
        dpo: bool,
        previous: Option<&Path>,
    ) -> Result<()> {
        let out = round.join("model");
        if out.exists() {
            return Ok(());
        }
        let partial = round.join("model.partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        engine.release();
        let reference = match (dpo, self.args.dpo_ref) {
            (false, _) | (true, DpoReference::Previous) => None,
            (true, DpoReference::M1) => Some(m1_reference(&self.model_dir(LoopMethod::Sft, 1))?),
            (true, DpoReference::M0) => Some(self.m0.clone()),
        };
        let job = RoundJob {
            round: number,
            data,
            dpo,
            m0: &self.m0,
            previous,
            reference,
            export_whole: number == 1 && self.args.dpo_ref == DpoReference::M1,
            out: &partial,
        };
        let label = format!(
            "{} {}",
            round
                .strip_prefix(self.dir.root())
                .unwrap_or(round)
                .display(),
            if dpo { "DPO" } else { "SFT" }
        );
        let started = Instant::now();
        match &self.args.training.train_cmd {
            Some(cmd) => {
                progress::phase(&format!(
                    "{label}: --train-cmd (output in {}/train.log)",
                    round.display()
                ));
                run_external(
                    cmd,
                    &self.args.training,
                    &job,
                    &self.checkpoint_needs(),
                    &round.join("train.log"),
                )?;
            }
            None => {
                crate::cmd::train::run_job(&candle_job(&self.args.training, &job)?, &label)?;
            }
        }
        self.phases.training += started.elapsed().as_secs_f64();
        std::fs::rename(&partial, &out)
            .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
        Ok(())
    }

    /// What a round's model folder must hold for the sampling engine.
    fn checkpoint_needs(&self) -> Vec<&'static str> {
        match (self.args.backend, self.args.serving.lora_hotload) {
            (BackendKind::Llamacpp, _) => vec!["model.gguf"],
            (BackendKind::Openai, true) => vec!["adapter/adapter_config.json"],
            // The hook decides what it serves.
            (BackendKind::Openai, false) => Vec::new(),
        }
    }

    /// Evaluates M_round (greedy + n_eval samples on every evaluation set) and, before the
    /// last round, samples the training questions, in one batch for the engine.
    fn sample_round(
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

    /// Rewrites a method's reports for its rounds up to `round` and prints its table.
    fn report(&mut self, method: LoopMethod, round: u32) -> Result<()> {
        let started = Instant::now();
        let options = ReportOptions {
            regrade: false,
            semantic: !self.args.no_semantic,
            bootstrap: report_settings(self.args).bootstrap(),
            sandbox: &self.args.sandbox,
            data: &self.args.data,
        };
        let (measures, changes) =
            report_method(&self.dir, &self.settings, method, round, &options)?;
        round_table::print(method.name(), &self.settings, &measures, &changes);
        self.measures.retain(|(m, _)| *m != method);
        self.measures.push((method, measures));
        compare_methods(&self.dir, &self.settings, &self.measures, options.bootstrap)?;
        self.phases.reporting += started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Measures a method's rounds up to `last`, writes its reports and `deltas.csv`.
fn report_method(
    dir: &LoopDir,
    settings: &LoopSettings,
    method: LoopMethod,
    last: u32,
    options: &ReportOptions,
) -> Result<(results::Measures, Vec<results::ChangeRow>)> {
    let files = dir.method_files(method, last)?;
    let out = dir.reports(method);
    std::fs::create_dir_all(&out)?;
    let value = serde_json::json!({
        "backend": settings.backend,
        "model": settings.model,
        "arith_seed": settings.arith_seed,
    });
    let measures = report_files(&out, &files, &value, method.name(), dir.root(), options)?;
    let changes = results::round_changes(method.name(), &measures, options.bootstrap);
    results::write_changes(&out, "deltas.csv", &dir_name(dir.root()), &changes)?;
    Ok((measures, changes))
}

/// The reports at the top of the loop directory: `summary.csv` and its figure (every
/// method per round, best rounds marked) and `methods_deltas.csv` (every pair of methods at
/// each round from 2 on, the later-listed method against the earlier).
fn compare_methods(
    dir: &LoopDir,
    settings: &LoopSettings,
    measures: &[(LoopMethod, results::Measures)],
    bootstrap: results::Bootstrap,
) -> Result<()> {
    let named: Vec<(&str, &results::Measures)> =
        measures.iter().map(|(m, x)| (m.name(), x)).collect();
    let eval = (settings.eval.task.as_str(), settings.eval.split.as_str());
    let ood: Vec<(&str, &str)> = settings
        .ood
        .iter()
        .map(|s| (s.task.as_str(), s.split.as_str()))
        .collect();
    results::write_summary(dir.root(), &results::summarize(&named, eval, &ood))?;
    let mut changes = Vec::new();
    for (i, (before, before_measures)) in measures.iter().enumerate() {
        for (after, after_measures) in &measures[i + 1..] {
            changes.extend(results::method_changes(
                (before.name(), before_measures),
                (after.name(), after_measures),
                2,
                bootstrap,
            ));
        }
    }
    results::write_changes(
        dir.root(),
        "methods_deltas.csv",
        &dir_name(dir.root()),
        &changes,
    )
}

/// The report settings of `harness run`'s flags.
fn report_settings(args: &RunArgs) -> ReportSettings {
    ReportSettings {
        bootstrap: args.bootstrap,
        bootstrap_seed: args.seed,
    }
}

/// `harness report DIR` on a loop directory: every method's reports, from its files.
pub fn report_loop(root: &Path, options: &ReportOptions) -> Result<results::Measures> {
    let settings = read_settings(root)?;
    let dir = LoopDir::open(root, &settings)?;
    let mut all = Vec::new();
    for &method in &settings.methods {
        let (measures, changes) = report_method(&dir, &settings, method, settings.rounds, options)?;
        round_table::print(method.name(), &settings, &measures, &changes);
        all.push((method, measures));
    }
    compare_methods(&dir, &settings, &all, options.bootstrap)?;
    Ok(all.pop().map(|(_, m)| m).unwrap_or_default())
}

/// The OOD sets of `--ood`, or the task's defaults (SPEC.md), each with `max_tokens` or its
/// task's default.
fn ood_sets(task: &Task, given: &[String], max_tokens: Option<u32>) -> Result<Vec<EvalSet>> {
    let names: Vec<String> = match given {
        [] => match task.name {
            "gsm8k" => vec!["svamp".into(), "math:math500".into()],
            "arith" => vec!["arith:ood".into()],
            _ => Vec::new(),
        },
        [none] if none == "none" => Vec::new(),
        _ => given.to_vec(),
    };
    names
        .iter()
        .map(|name| {
            let (task, split) = match name.split_once(':') {
                Some((t, s)) => (benchmarks::task(t)?, s.to_string()),
                None => {
                    let t = benchmarks::task(name)?;
                    (t, t.eval_split.to_string())
                }
            };
            task.split(&split)
                .with_context(|| format!("--ood {name}"))?;
            Ok(EvalSet {
                task: task.name.into(),
                split,
                max_tokens: max_tokens.unwrap_or(task.max_tokens),
            })
        })
        .collect()
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

/// Wall time of this invocation by phase.
#[derive(Default)]
struct Phases {
    sampling: f64,
    grading: f64,
    training: f64,
    /// Metrics, embeddings, CSVs and plots.
    reporting: f64,
}

impl Phases {
    /// Prints the phases and the loop's overhead: everything but sampling, training and
    /// embedding (grading, the rest of the reports, loading, bookkeeping).
    fn print(&self, wall: f64) {
        let embedding = crate::reports::embedding_seconds();
        let other = wall - self.sampling - self.grading - self.training - self.reporting;
        let overhead = wall - self.sampling - self.training - embedding;
        println!(
            "time: {wall:.0} s: sampling {:.0} s, grading {:.0} s, training {:.0} s, reports {:.0} s \
             (embedding {embedding:.0} s), other {other:.0} s; loop overhead {overhead:.0} s ({:.1}%)",
            self.sampling,
            self.grading,
            self.training,
            self.reporting,
            100.0 * overhead / wall.max(1e-9)
        );
    }
}

fn default_out() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("run-{now}"))
}
