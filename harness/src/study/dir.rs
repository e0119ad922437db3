//! The loop's directory and its typed manifest.
//!
//! ```text
//! DIR/manifest.json            settings, seeds, model identity (LoopManifest)
//! DIR/round-0/eval/*.jsonl     M0's evaluation (--eval-base)
//! DIR/round-1/gold.jsonl       M1's training data (the gold pairs)
//! DIR/round-1/model/           M1: adapter.gguf (LoRA; adapter/ with a server, an external
//!                              trainer or --export-peft; model.gguf with --export-merged)
//!                              or model.gguf (full), train_log.jsonl,
//!                              train_summary.json
//! DIR/round-1/eval/*.jsonl     M1's evaluation, one file per task and split
//! DIR/round-1/train_samples.jsonl   M1's samples on the training questions
//! DIR/<method>/round-<t>/data.jsonl  D_t (TRL format) that trained M_t
//! DIR/<method>/round-<t>/{model,eval,train_samples.jsonl}
//! DIR/<method>/round-<t> -> ../<other>/round-<t>   a round trained as an earlier method's
//!                              (sft-dpo's round 2 is dpo's: DPO of M1 on D_2), done once
//! DIR/<method>/*.csv, *.png, *.svg  the method's reports (round 1 shared)
//! DIR/sbert-embeddings.bin     SentenceBERT vectors, one per distinct response
//! DIR/phases.jsonl             each sampling step's time and new tokens, one line per step
//! ```
//!
//! Round 1 (and round 0) are shared by every method, and a later round by the methods that
//! train it the same way (`LoopSettings::shared_round`). Each step's output is written
//! atomically (files by rename, the model folder by renaming `model.partial`), so a step whose
//! output exists is done and a stopped run continues at the first step that is not.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::flags::{DpoReference, LoopMethod, LoopTrainArgs, TrainerKind};
use crate::run_dir::{read_manifest, refuse_other_settings, write_atomic};
use crate::training::{AdapterType, ExportType};

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
    /// Gold pairs of M1 when not --train-limit (absent in manifests of runs made before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_limit: Option<usize>,
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
    /// LoRA rounds sampled as M0 with the round's adapter.gguf applied (the embedded engine),
    /// not as a merged model.gguf (what runs made before did; absent in their manifests).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub round_adapters: bool,
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
    /// adapter.gguf's tensor type. Recorded when it is not f32, so that a run made before
    /// it was a setting (f32 adapters, no field) continues with `--adapter-type f32`.
    #[serde(
        default = "AdapterType::before_it_was_a_setting",
        skip_serializing_if = "AdapterType::is_f32"
    )]
    pub adapter_type: AdapterType,
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
            adapter_type: s.adapter_type,
        }
    }
}

impl LoopSettings {
    /// The method whose M_round `method` shares: the first listed before it that trains the
    /// same objectives in rounds 2 to `round` (DPO for SFT-DPO's round 2); None when the
    /// round is its own (rounds 0 and 1 are every method's and live at the top).
    pub fn shared_round(&self, method: LoopMethod, round: u32) -> Option<LoopMethod> {
        if round < 2 {
            return None;
        }
        self.methods
            .iter()
            .copied()
            .take_while(|m| *m != method)
            .find(|m| m.same_model_as(method, round))
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

    /// Makes `method`'s round folder a link to `owner`'s (`../<owner>/round-<t>`), which
    /// holds the same model and samples; true when it is one. False when a folder is already
    /// there (an older version's own copy, finished or not), which is kept and continued.
    pub fn link_round(&self, owner: LoopMethod, method: LoopMethod, round: u32) -> Result<bool> {
        let link = self.round(method, round);
        if let Ok(meta) = link.symlink_metadata() {
            return Ok(meta.is_symlink());
        }
        let parent = self.root.join(method.name());
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let target = Path::new("..")
            .join(owner.name())
            .join(format!("round-{round}"));
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(methods: &[LoopMethod]) -> LoopSettings {
        let mut settings: LoopSettings = serde_json::from_str(SETTINGS).unwrap();
        settings.methods = methods.to_vec();
        settings
    }

    const SETTINGS: &str = r#"{"task":"arith","task_version":1,"train_split":"train",
        "eval":{"task":"arith","split":"test"},"ood":[],"methods":[],"rounds":5,
        "backend":"llamacpp","model":"m","m1":null,"eval_base":false,"train_limit":1,
        "eval_limit":1,"ood_limit":1,"n_train":1,"n_eval":1,"temperature":0.75,"top_p":0.95,
        "top_k":0,"min_p":0.0,"max_tokens":1,"seed":1,"style":"chat","max_pairs":5,
        "dpo_ref":"previous","arith_seed":1,"flash_attention":null,"training":{"full":false,
        "lora_rank":16,"lora_alpha":32.0,"lora_dropout":0.05,"lora_targets":["all-linear"],
        "lr":null,"dpo_lr":null,"epochs":1,"m1_epochs":3,"train_batch_size":4,
        "grad_accum":1,"warmup_ratio":0.1,"schedule":"cosine","max_grad_norm":1.0,
        "weight_decay":0.0,"train_seed":42,"max_len":1024,"beta":0.1,"label_smoothing":0.0,
        "nll_weight":0.0,"gguf_type":null},"round_adapters":true}"#;

    #[test]
    fn a_manifest_without_the_adapter_type_is_an_f32_run_and_reads_back_the_same() {
        // SETTINGS predates the field: its adapters were f32.
        let old = methods(&[]);
        assert_eq!(old.training.adapter_type, AdapterType::F32);
        let json = serde_json::to_value(&old).unwrap();
        assert!(json["training"].get("adapter_type").is_none(), "{json}");
        let mut new = old.clone();
        new.training.adapter_type = AdapterType::F16;
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["training"]["adapter_type"], "f16");
    }

    #[test]
    fn dpo_and_sft_dpo_share_round_two_and_nothing_else() {
        use LoopMethod::{Dpo, Sft, SftDpo};
        let all = methods(&[Sft, Dpo, SftDpo]);
        assert_eq!(all.shared_round(SftDpo, 2), Some(Dpo));
        for round in [0, 1, 3, 4, 5] {
            assert_eq!(all.shared_round(SftDpo, round), None, "round {round}");
        }
        for round in 0..=5 {
            assert_eq!(all.shared_round(Sft, round), None);
            assert_eq!(all.shared_round(Dpo, round), None, "dpo is listed first");
        }
        // The first listed owns the round, whichever it is.
        let reversed = methods(&[SftDpo, Dpo]);
        assert_eq!(reversed.shared_round(Dpo, 2), Some(SftDpo));
        assert_eq!(reversed.shared_round(SftDpo, 2), None);
        assert_eq!(methods(&[SftDpo]).shared_round(SftDpo, 2), None);
    }

    #[test]
    fn a_shared_round_is_a_relative_link_and_an_existing_folder_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let dir = LoopDir::existing(root.path());
        let owner = dir.round(LoopMethod::Dpo, 2);
        std::fs::create_dir_all(owner.join("eval")).unwrap();
        std::fs::write(owner.join("eval/arith.test.jsonl"), "x").unwrap();
        assert!(
            dir.link_round(LoopMethod::Dpo, LoopMethod::SftDpo, 2)
                .unwrap()
        );
        let link = dir.round(LoopMethod::SftDpo, 2);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../dpo/round-2")
        );
        assert_eq!(
            std::fs::read_to_string(link.join("eval/arith.test.jsonl")).unwrap(),
            "x"
        );
        assert!(
            dir.link_round(LoopMethod::Dpo, LoopMethod::SftDpo, 2)
                .unwrap()
        );
        std::fs::create_dir_all(dir.round(LoopMethod::Sft, 2)).unwrap();
        assert!(!dir.link_round(LoopMethod::Dpo, LoopMethod::Sft, 2).unwrap());
        assert!(
            !dir.round(LoopMethod::Sft, 2).is_symlink(),
            "a folder is kept"
        );
    }
}
