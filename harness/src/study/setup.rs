//! The loop's fixed inputs, built once from the flags: the settings its manifest records,
//! the training questions, the evaluation sets with their problems, the directory and the
//! sandbox; and the time each phase took.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use benchmarks::{Problem, PromptStyle, Sandbox, Task, Template};

use super::dir::{EvalSet, LoopDir, LoopSettings, TrainingSettings};
use super::flags::{LoopMethod, RunArgs};
use crate::engine::{backend_name, flash_attention};
use crate::evaluate::evenly_spaced;
use crate::flags::BackendKind;
use crate::reports::{ReportSettings, embedding_seconds};

/// A loop's fixed inputs: settings, problems and the directory.
pub(super) struct Loop<'a> {
    pub(super) args: &'a RunArgs,
    pub(super) settings: LoopSettings,
    pub(super) dir: LoopDir,
    pub(super) task: &'static Task,
    pub(super) template: &'static Template,
    pub(super) style: PromptStyle,
    pub(super) m0: PathBuf,
    pub(super) train_problems: Vec<Problem>,
    /// M1's gold questions when --gold-limit differs from --train-limit.
    pub(super) gold_problems: Option<Vec<Problem>>,
    /// The evaluation split first, then the OOD sets, with their problems.
    pub(super) eval_sets: Vec<EvalProblems>,
    pub(super) sandbox: Option<Sandbox>,
    pub(super) phases: Phases,
    /// Each method's latest measures, for the comparisons between methods.
    pub(super) measures: Vec<(LoopMethod, results::Measures)>,
}

impl<'a> Loop<'a> {
    pub(super) fn new(
        args: &'a RunArgs,
        m0: PathBuf,
        model_id: String,
        out: PathBuf,
    ) -> Result<Self> {
        let Problems {
            task,
            template,
            train_split,
            train: train_problems,
            gold: gold_problems,
            eval_sets,
        } = Problems::load(args)?;
        let (eval, ood) = Problems::split_sets(&eval_sets);
        let settings = loop_settings(args, task, train_split, (eval, ood), (model_id, &m0));
        let dir = LoopDir::open(&out, &settings)?;
        report_settings(args).record(dir.root())?;
        let needs_sandbox = eval_sets
            .iter()
            .any(|(_, t, _, _)| t.grader == benchmarks::GraderKind::Code);
        let sandbox = match needs_sandbox {
            true => Some(Sandbox::new(args.sandbox.config())?),
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
            gold_problems,
            eval_sets,
            sandbox,
            phases: Phases::default(),
            measures: Vec::new(),
        })
    }

    /// The folder of M_round for a method.
    pub(super) fn model_dir(&self, method: LoopMethod, round: u32) -> PathBuf {
        match (round, &self.args.m1) {
            (1, Some(m1)) => m1.clone(),
            _ => self.dir.round(method, round).join("model"),
        }
    }
}

/// An evaluation set with its task, prompt template and problems.
pub(super) type EvalProblems = (EvalSet, &'static Task, &'static Template, Vec<Problem>);

/// The problems a loop asks, loaded from the flags: the training questions, M1's gold
/// questions and each evaluation set's problems.
pub(super) struct Problems {
    pub(super) task: &'static Task,
    pub(super) template: &'static Template,
    pub(super) train_split: &'static str,
    pub(super) train: Vec<Problem>,
    /// M1's gold questions when --gold-limit differs from --train-limit.
    pub(super) gold: Option<Vec<Problem>>,
    /// The evaluation split first, then the OOD sets.
    pub(super) eval_sets: Vec<EvalProblems>,
}

impl Problems {
    pub(super) fn load(args: &RunArgs) -> Result<Self> {
        let task = benchmarks::task(&args.task)?;
        let train_split = task
            .train_split
            .with_context(|| format!("task {} has no training split", task.name))?;
        let source = args.data.source();
        let template = benchmarks::prompt::template(task.template)?;
        let train_split_problems = task.load(train_split, &source, args.data.seed)?;
        let gold = gold_limit(args).map(|limit| evenly_spaced(train_split_problems.clone(), limit));
        let train = evenly_spaced(train_split_problems, args.train_limit);
        let eval = EvalSet {
            task: task.name.into(),
            split: task.eval_split.into(),
            max_tokens: args.max_tokens.unwrap_or(task.max_tokens),
        };
        let ood = ood_sets(task, &args.ood, args.max_tokens)?;
        let mut eval_sets = Vec::new();
        for (set, limit) in std::iter::once((eval, args.eval_limit))
            .chain(ood.into_iter().map(|s| (s, args.ood_limit)))
        {
            let t = benchmarks::task(&set.task)?;
            let problems = evenly_spaced(t.load(&set.split, &source, args.data.seed)?, limit);
            let tpl = benchmarks::prompt::template(t.template)?;
            eval_sets.push((set, t, tpl, problems));
        }
        Ok(Problems {
            task,
            template,
            train_split,
            train,
            gold,
            eval_sets,
        })
    }
}

impl Problems {
    /// The evaluation split's set and the OOD sets, as the manifest records them.
    pub(super) fn split_sets(eval_sets: &[EvalProblems]) -> (EvalSet, Vec<EvalSet>) {
        let ood = eval_sets[1..].iter().map(|(set, ..)| set.clone()).collect();
        (eval_sets[0].0.clone(), ood)
    }
}

/// --gold-limit when it differs from --train-limit (M1's gold questions are then their own).
fn gold_limit(args: &RunArgs) -> Option<usize> {
    args.gold_limit.filter(|&limit| limit != args.train_limit)
}

/// What the manifest records: every setting that decides the loop's numbers.
pub(super) fn loop_settings(
    args: &RunArgs,
    task: &Task,
    train_split: &str,
    (eval, ood): (EvalSet, Vec<EvalSet>),
    (model_id, m0): (String, &Path),
) -> LoopSettings {
    LoopSettings {
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
        gold_limit: gold_limit(args),
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
        training: TrainingSettings::from(&args.training),
        round_adapters: adapter_rounds(args),
    }
}

/// Whether LoRA rounds are sampled as M0 with the round's adapter.gguf applied: the embedded
/// engine loads megabytes a round instead of a merged model, and samples exactly what was
/// trained. (A server loads the PEFT adapter, or what its hook serves.)
pub(super) fn adapter_rounds(args: &RunArgs) -> bool {
    args.backend == BackendKind::Llamacpp && !args.training.settings.full
}

/// The report settings of `harness run`'s flags.
pub(super) fn report_settings(args: &RunArgs) -> ReportSettings {
    ReportSettings {
        bootstrap: args.bootstrap,
        bootstrap_seed: args.seed,
    }
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

/// Wall time of this invocation by phase.
#[derive(Default)]
pub(super) struct Phases {
    pub(super) sampling: f64,
    pub(super) grading: f64,
    pub(super) training: f64,
    /// Metrics, embeddings, CSVs and plots.
    pub(super) reporting: f64,
}

impl Phases {
    /// Prints the phases and the loop's overhead: everything but sampling, training and
    /// embedding (grading, the rest of the reports, loading, bookkeeping).
    pub(super) fn print(&self, wall: f64) {
        let embedding = embedding_seconds();
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
