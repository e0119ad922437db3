//! The loop's directory and its typed manifest.
//!
//! ```text
//! DIR/manifest.json            settings, seeds, model identity (LoopManifest)
//! DIR/round-0/eval/*.jsonl     M0's evaluation (--eval-base)
//! DIR/round-1/gold.jsonl       M1's training data (the gold pairs)
//! DIR/round-1/model/           M1: model.gguf, adapter/ (LoRA), train_log.jsonl, train_summary.json
//! DIR/round-1/eval/*.jsonl     M1's evaluation, one file per task and split
//! DIR/round-1/train_samples.jsonl   M1's samples on the training questions
//! DIR/<method>/round-<t>/data.jsonl  D_t (TRL format) that trained M_t
//! DIR/<method>/round-<t>/{model,eval,train_samples.jsonl}
//! DIR/<method>/*.csv, *.png, *.svg  the method's reports (round 1 shared)
//! DIR/sbert-embeddings.bin     SentenceBERT vectors, one per distinct response
//! DIR/phases.jsonl             each sampling step's time and new tokens, one line per step
//! ```
//!
//! Round 1 (and round 0) are shared by every method. Each step's output is written
//! atomically (files by rename, the model folder by renaming `model.partial`), so a step whose
//! output exists is done and a stopped run continues at the first step that is not.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::flags::{DpoReference, LoopMethod, LoopTrainArgs, TrainerKind};
use crate::run_dir::{read_manifest, refuse_other_settings, write_atomic};
use crate::training::ExportType;

/// An evaluation set: a task's split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalSet {
    pub task: String,
    pub split: String,
    /// Largest number of new tokens per response (`--max-tokens`, else the task's default).
    #[serde(default)]
    pub max_tokens: u32,
}

impl EvalSet {
    /// The sample file name of this set.
    pub fn file_name(&self) -> String {
        format!("{}.{}.jsonl", self.task, self.split)
    }
}

/// Everything that decides a loop's numbers. A directory is continued only with the same
/// settings, except `methods` and `rounds`, which may grow (more methods share M1; more
/// rounds continue the last model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopSettings {
    pub task: String,
    pub task_version: u32,
    pub train_split: String,
    pub eval: EvalSet,
    pub ood: Vec<EvalSet>,
    pub methods: Vec<LoopMethod>,
    pub rounds: u32,
    pub backend: String,
    /// M0's identity: the GGUF's digest (embedded engine) or the served model id.
    pub model: String,
    /// Where M0 was read from (informational: the digest is what must match).
    #[serde(default)]
    pub model_path: String,
    /// A reused M1 folder, if any.
    pub m1: Option<PathBuf>,
    pub eval_base: bool,
    pub train_limit: usize,
    pub eval_limit: usize,
    pub ood_limit: usize,
    pub n_train: u32,
    pub n_eval: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub min_p: f32,
    pub max_tokens: u32,
    pub seed: u64,
    pub style: String,
    pub max_pairs: usize,
    pub dpo_ref: DpoReference,
    pub arith_seed: u64,
    /// The embedded engine's attention kernel (changes greedy output).
    pub flash_attention: Option<String>,
    pub training: TrainingSettings,
}

/// The trainer's settings as the manifest records them: what decides the numbers (not the
/// `--train-cmd` text, which a corrected script path may change, nor the thread count). Its
/// own type, so that regrouping the flags leaves every manifest as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSettings {
    #[serde(default)]
    pub trainer: TrainerKind,
    pub full: bool,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_targets: Vec<String>,
    pub lr: Option<f64>,
    pub dpo_lr: Option<f64>,
    pub epochs: usize,
    pub m1_epochs: usize,
    pub train_batch_size: usize,
    pub grad_accum: usize,
    pub warmup_ratio: f64,
    pub schedule: trainer::optim::Schedule,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub train_seed: u64,
    pub max_len: usize,
    pub beta: f64,
    pub label_smoothing: f64,
    pub nll_weight: f64,
    pub gguf_type: Option<ExportType>,
}

impl From<&LoopTrainArgs> for TrainingSettings {
    fn from(t: &LoopTrainArgs) -> Self {
        let s = &t.settings;
        TrainingSettings {
            trainer: t.trainer,
            full: s.full,
            lora_rank: s.lora_rank,
            lora_alpha: s.lora_alpha,
            lora_dropout: s.lora_dropout,
            lora_targets: s.lora_targets.clone(),
            lr: s.lr,
            dpo_lr: t.dpo_lr,
            epochs: s.epochs,
            m1_epochs: t.m1_epochs,
            train_batch_size: s.train_batch_size,
            grad_accum: s.grad_accum,
            warmup_ratio: s.warmup_ratio,
            schedule: s.schedule,
            max_grad_norm: s.max_grad_norm,
            weight_decay: s.weight_decay,
            train_seed: s.train_seed,
            max_len: s.max_len,
            beta: s.beta,
            label_smoothing: s.label_smoothing,
            nll_weight: s.nll_weight,
            gguf_type: t.gguf_type,
        }
    }
}

/// `manifest.json` of a loop directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoopManifest {
    pub harness_version: String,
    /// Always `run` (what `harness report` looks at to tell a loop from a bench).
    pub command: String,
    pub settings: LoopSettings,
}

/// A loop directory.
pub struct LoopDir {
    root: PathBuf,
}

impl LoopDir {
    /// Opens (creating if needed) a loop directory for these settings; an existing one must
    /// hold the same settings, and the refusal names each that differs.
    pub fn open(root: &Path, settings: &LoopSettings) -> Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let existing = read_manifest(root)?;
        if !existing.is_null() {
            if existing["command"] != "run" {
                bail!(
                    "{} holds a `harness {}` run, not a loop; use another --out",
                    root.display(),
                    existing["command"].as_str().unwrap_or("?")
                );
            }
            // Through text, as the file was written: `to_value` widens an f32 (0.95 becomes
            // 0.949999988079071) where the written text keeps its shortest form.
            let mut new: Value = serde_json::from_str(&serde_json::to_string(settings)?)?;
            let mut old = existing["settings"].clone();
            for growable in ["methods", "rounds"] {
                old[growable] = Value::Null;
                new[growable] = Value::Null;
            }
            refuse_other_settings(root, &old, &new)?;
        }
        let manifest = LoopManifest {
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            command: "run".into(),
            settings: settings.clone(),
        };
        write_atomic(
            &root.join("manifest.json"),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )?;
        Ok(LoopDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of round `round` of `method` (rounds 0 and 1 are shared).
    pub fn round(&self, method: LoopMethod, round: u32) -> PathBuf {
        match round {
            0 | 1 => self.root.join(format!("round-{round}")),
            _ => self.root.join(method.name()).join(format!("round-{round}")),
        }
    }

    /// Where a method's reports go.
    pub fn reports(&self, method: LoopMethod) -> PathBuf {
        self.root.join(method.name())
    }

    /// The sample files of a method's rounds up to `last`, in round order.
    pub fn method_files(&self, method: LoopMethod, last: u32) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for round in 0..=last {
            let folder = self.round(method, round);
            let eval = folder.join("eval");
            if eval.is_dir() {
                let mut found: Vec<PathBuf> = std::fs::read_dir(&eval)?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect();
                found.sort();
                files.extend(found);
            }
            let train = folder.join("train_samples.jsonl");
            if train.exists() {
                files.push(train);
            }
        }
        Ok(files)
    }

    /// Appends one line to `phases.jsonl` (the time a step took; not compared on resume).
    pub fn record_phase(&self, line: &Value) -> Result<()> {
        use std::io::Write;
        let path = self.root.join("phases.jsonl");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))
    }

    /// The sampling throughput of a method's rounds (round 1 shared) from `phases.jsonl`:
    /// new tokens per second over all its sampling steps; None when none is recorded.
    pub fn sampling_throughput(&self, method: LoopMethod) -> Option<f64> {
        let text = std::fs::read_to_string(self.root.join("phases.jsonl")).ok()?;
        let (mut tokens, mut seconds) = (0.0, 0.0);
        for line in text.lines() {
            let Ok(step) = serde_json::from_str::<Value>(line) else {
                continue; // a line cut short by a crash
            };
            let round = step["round"].as_u64().unwrap_or(0);
            if step["phase"] == "sampling" && (round <= 1 || step["method"] == method.name()) {
                tokens += step["new_tokens"].as_f64().unwrap_or(0.0);
                seconds += step["seconds"].as_f64().unwrap_or(0.0);
            }
        }
        (seconds > 0.0).then(|| tokens / seconds)
    }

    /// An existing loop directory, without checking or rewriting its manifest (to read it).
    pub fn existing(root: &Path) -> Self {
        LoopDir {
            root: root.to_path_buf(),
        }
    }
}

/// The settings of a loop directory's manifest.
pub fn read_settings(root: &Path) -> Result<LoopSettings> {
    let path = root.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: LoopManifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a loop manifest", path.display()))?;
    Ok(manifest.settings)
}
