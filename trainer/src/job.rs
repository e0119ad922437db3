//! One training job end to end: read the data, tokenise it exactly as the sampler does,
//! build the model, score the reference (DPO), train, and write the checkpoints and logs.
//!
//! Output folder:
//! - `model.gguf`: merged weights for the llama.cpp backend (when the base is a GGUF, or when
//!   asked), written after every epoch;
//! - `adapter.gguf`: the LoRA adapter as llama.cpp applies it over a GGUF base (LoRA runs);
//! - `adapter/`: PEFT LoRA adapter (LoRA runs, when asked or over a Hugging Face base), for
//!   vLLM's `/v1/load_lora_adapter`, PEFT and TRL;
//! - `hf/`: merged Hugging Face safetensors (when asked);
//! - `train_log.jsonl`: one line per optimizer step; `train_summary.json`: the settings and
//!   before/after figures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::text::TextTokenizer;
use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use serde::Serialize;

use crate::batch::Sequence;
use crate::checkpoint::{
    GgufType, Source, Weights, export_gguf, export_hf, export_lora_gguf, export_peft,
    read_lora_gguf, read_peft,
};
use crate::data::{read_preferences, read_sft};
use crate::model::{Llama, Tuning};
use crate::train::{
    DpoParams, DpoStats, Event, ScoredPair, StepLog, TrainParams, dpo_stats, response_logprobs,
    sft_loss, train_dpo, train_sft,
};

/// The training objective.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Sft,
    Dpo(DpoParams),
}

/// Everything a training run needs.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub method: Method,
    pub data: PathBuf,
    /// Held-out records in the same format, measured before and after training.
    pub eval_data: Option<PathBuf>,
    /// The model to train: a `.gguf` or a Hugging Face folder.
    pub model: PathBuf,
    /// DPO's reference model (default: `model`, i.e. M_{t-1}).
    pub reference: Option<PathBuf>,
    /// The GGUF or Hugging Face folder whose tokenizer and chat template encode the data
    /// (default: `model`; a folder needs its tokenizer.json).
    pub tokenizer: Option<PathBuf>,
    pub tuning: Tuning,
    /// The LoRA adapter training starts from instead of a fresh initialisation
    /// (self-improvement rounds: `A_{t+1}` continues `A_t` over the frozen base `model`): a
    /// PEFT folder, or a llama.cpp adapter `.gguf` over a GGUF `model` (what the embedded
    /// engine sampled). Without `reference`, DPO's reference is then `model + adapter`.
    pub continue_adapter: Option<PathBuf>,
    /// `base_model_name_or_path` written into the exported adapter (default: `model`'s path).
    pub base_model_name: Option<String>,
    /// Measure the model on all the training data: SFT's mean loss before and after training,
    /// DPO's rewards after it (a forward pass over the data each time: minutes on a CPU for a
    /// few hundred examples; informational, so the loop leaves it off).
    pub training_data_stats: bool,
    pub params: TrainParams,
    /// Longest sequence (prompt + response) in tokens; longer responses are cut.
    pub max_len: usize,
    pub out: PathBuf,
    /// GGUF export type; `None` skips the GGUF export.
    pub gguf: Option<GgufType>,
    /// Also write merged Hugging Face safetensors.
    pub hf: bool,
    /// LoRA: write the PEFT adapter folder `adapter/` (what vLLM, PEFT and TRL read). Over a
    /// Hugging Face base it is written either way (the adapter's only form there).
    pub peft: bool,
    /// LoRA over a GGUF base: tensor type of `adapter.gguf`, the adapter as llama.cpp applies
    /// it.
    pub adapter_type: GgufType,
    pub device: Device,
    pub dtype: DType,
}

/// What a finished job reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub method: String,
    pub examples: usize,
    pub skipped_too_long: usize,
    pub steps: u64,
    pub trainable_parameters: usize,
    /// SFT: mean response-token loss on the training data before and after.
    pub loss_before: Option<f64>,
    pub loss_after: Option<f64>,
    /// DPO: rewards on the training pairs after training (before, margins are 0); with
    /// `training_data_stats` only.
    pub dpo_after: Option<DpoStats>,
    /// Held-out data (`--eval-data`): SFT loss, or DPO rewards, before and after training.
    pub eval_loss_before: Option<f64>,
    pub eval_loss_after: Option<f64>,
    pub eval_dpo_before: Option<DpoStats>,
    pub eval_dpo_after: Option<DpoStats>,
    /// The whole job: loading, tokenising, training, the statistics after it and exporting.
    pub seconds: f64,
    /// Training alone: DPO's reference scoring and the optimizer steps (with the per-epoch
    /// export of a LoRA adapter, a few megabytes), the span TRL reports as `train_runtime`
    /// (its DPO computes the reference inside each step); what scripts/bench-train-loop.sh
    /// compares.
    pub train_seconds: f64,
    pub tokens_per_second: f64,
    /// What was written, relative to the output folder (the loop trains into
    /// `model.partial/` and renames it, so full paths would name a folder that is gone).
    pub outputs: Vec<PathBuf>,
}

/// Progress of a job, for a progress bar.
pub enum Progress<'a> {
    /// A phase with a message (loading, scoring the reference, exporting).
    Phase(&'a str),
    Step(&'a StepLog),
}

/// The job's tuning as trained: DPO trains without LoRA dropout, as TRL's DPO does
/// (`DPOConfig.disable_dropout`, on by default): with dropout the policy's log-probabilities
/// at the first step would differ from the reference's, which are scored without it.
fn trained_tuning(job: &TrainJob) -> Tuning {
    match (&job.method, &job.tuning) {
        (Method::Dpo(_), Tuning::Lora(lora)) => Tuning::Lora(crate::LoraConfig {
            dropout: 0.0,
            ..lora.clone()
        }),
        (_, tuning) => tuning.clone(),
    }
}

pub fn run(job: &TrainJob, progress: &mut dyn FnMut(Progress)) -> Result<TrainSummary> {
    let started = Instant::now();
    let (tokenizer, weights, model) = load(job, progress)?;
    let trainable_parameters = model
        .trainable()
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum();
    let mut prepared = prepare(job, &tokenizer, &job.data)?;
    let mut prepared_eval = match &job.eval_data {
        Some(path) => Some(prepare(job, &tokenizer, path)?),
        None => None,
    };
    let mut train_seconds = score_training_pairs(job, &model, &mut prepared.1, progress)?;
    if let Some((_, Prepared::Dpo(pairs))) = &mut prepared_eval {
        score_reference(job, &model, pairs)?;
    }
    let eval_before = evaluate(job, &model, prepared_eval.as_ref().map(|p| &p.1))?;
    std::fs::create_dir_all(&job.out).with_context(|| format!("creating {}", job.out.display()))?;
    let log_path = job.out.join("train_log.jsonl");
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&log_path).with_context(|| log_path.display().to_string())?,
    );
    let mut outputs = Vec::new();
    let mut tokens_per_second_sum = 0f64;
    let mut on_event = |event: Event| -> Result<()> {
        match event {
            Event::Step(step) => {
                serde_json::to_writer(&mut log, step)?;
                log.write_all(b"\n")?;
                log.flush()?;
                tokens_per_second_sum += step.tokens_per_second;
                progress(Progress::Step(step));
            }
            Event::EpochEnd(_) => {
                outputs = export(job, &weights, &model)?;
            }
        }
        Ok(())
    };
    let (records, prepared) = prepared;
    let Trained {
        method: summary_method,
        examples,
        steps,
        loss_before,
        loss_after,
        dpo_after,
        seconds: steps_seconds,
    } = train(job, &model, &prepared, &mut on_event)?;
    train_seconds += steps_seconds;
    let skipped = records - examples;
    let eval_after = evaluate(job, &model, prepared_eval.as_ref().map(|p| &p.1))?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = TrainSummary {
        method: summary_method.into(),
        examples,
        skipped_too_long: skipped,
        steps: steps as u64,
        trainable_parameters,
        loss_before,
        loss_after,
        dpo_after,
        eval_loss_before: eval_before.0,
        eval_loss_after: eval_after.0,
        eval_dpo_before: eval_before.1,
        eval_dpo_after: eval_after.1,
        seconds,
        train_seconds,
        tokens_per_second: tokens_per_second_sum / steps.max(1) as f64,
        outputs,
    };
    crate::checkpoint::write_file_atomically(&job.out.join("train_summary.json"), |w| {
        serde_json::to_writer_pretty(w, &summary)?;
        Ok(())
    })?;
    Ok(summary)
}

/// The job's tokenizer, its base weights and the model to train (the adapter it continues
/// loaded), after checking that the tokenizer fits the model.
fn load(
    job: &TrainJob,
    progress: &mut dyn FnMut(Progress),
) -> Result<(TextTokenizer, Weights, Llama)> {
    let tokenizer_path = match (&job.tokenizer, is_gguf(&job.model)) {
        (Some(path), _) => path.clone(),
        (None, true) => job.model.clone(),
        (None, false) if job.model.join("tokenizer.json").exists() => job.model.clone(),
        (None, false) => bail!(
            "{}: this folder has no tokenizer.json; give --tokenizer (the GGUF or folder the \
             sampler used) so that training sees the sampler's exact tokens",
            job.model.display()
        ),
    };
    progress(Progress::Phase("loading the tokenizer"));
    let tokenizer = TextTokenizer::load(&tokenizer_path)
        .with_context(|| format!("tokenizer {}", tokenizer_path.display()))?;
    progress(Progress::Phase("loading the model"));
    let weights = Weights::load(&job.model, job.dtype, &job.device)
        .with_context(|| format!("model {}", job.model.display()))?;
    if tokenizer.vocab_size() > weights.config.vocab_size {
        bail!(
            "the tokenizer ({}) has {} tokens but the model has {}",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
            weights.config.vocab_size
        );
    }
    let model = Llama::new(&weights, &trained_tuning(job), job.params.seed)?;
    if let Some(path) = &job.continue_adapter {
        progress(Progress::Phase("loading the adapter to continue"));
        let adapter = match is_gguf(path) {
            true => read_lora_gguf(path, &weights, job.dtype, &job.device)?,
            false => read_peft(path, job.dtype, &job.device)?,
        };
        model
            .load_adapter(&adapter)
            .with_context(|| format!("adapter {}", path.display()))?;
    }
    Ok((tokenizer, weights, model))
}

/// What training on the prepared data gave, before the job's own statistics.
struct Trained {
    method: &'static str,
    examples: usize,
    steps: usize,
    loss_before: Option<f64>,
    loss_after: Option<f64>,
    dpo_after: Option<DpoStats>,
    /// The optimizer steps alone (the losses and statistics around them left out).
    seconds: f64,
}

/// Trains `model` on `prepared` with the job's method: SFT (with the training data's loss
/// before and after, when asked) or DPO (with the rewards on the training pairs after, when
/// asked).
fn train(
    job: &TrainJob,
    model: &Llama,
    prepared: &Prepared,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<Trained> {
    Ok(match (&job.method, prepared) {
        (_, Prepared::Sft(seqs)) => {
            let loss = |model: &Llama| -> Result<Option<f64>> {
                match job.training_data_stats {
                    true => Ok(Some(sft_loss(model, seqs, job.params.batch_size)?)),
                    false => Ok(None),
                }
            };
            let loss_before = loss(model)?;
            let started = Instant::now();
            let logs = train_sft(model, seqs, &job.params, on_event)?;
            let seconds = started.elapsed().as_secs_f64();
            Trained {
                method: "sft",
                examples: seqs.len(),
                steps: logs.len(),
                loss_before,
                loss_after: loss(model)?,
                dpo_after: None,
                seconds,
            }
        }
        (Method::Dpo(dpo), Prepared::Dpo(pairs)) => {
            let started = Instant::now();
            let logs = train_dpo(model, pairs, &job.params, dpo, on_event)?;
            let seconds = started.elapsed().as_secs_f64();
            Trained {
                method: "dpo",
                examples: pairs.len(),
                steps: logs.len(),
                loss_before: None,
                loss_after: None,
                dpo_after: match job.training_data_stats {
                    true => Some(dpo_stats(model, pairs, dpo.beta, job.params.batch_size)?),
                    false => None,
                },
                seconds,
            }
        }
        (Method::Sft, Prepared::Dpo(_)) => unreachable!("prepared from the method"),
    })
}

/// Reads and tokenises a data file for the job's method; returns the record count too.
fn prepare(job: &TrainJob, tokenizer: &TextTokenizer, path: &Path) -> Result<(usize, Prepared)> {
    Ok(match &job.method {
        Method::Sft => {
            let data = read_sft(path)?;
            let mut seqs = Vec::with_capacity(data.len());
            for ex in &data {
                let prompt = tokenizer.prompt(&ex.prompt)?;
                let response = tokenizer.response(&ex.prompt, &ex.completion)?;
                seqs.extend(Sequence::new(prompt, response, job.max_len));
            }
            if seqs.is_empty() {
                bail!(
                    "{}: no example fits in {} tokens",
                    path.display(),
                    job.max_len
                );
            }
            (data.len(), Prepared::Sft(seqs))
        }
        Method::Dpo(_) => {
            let data = read_preferences(path)?;
            let mut pairs = Vec::with_capacity(data.len());
            for ex in &data {
                let prompt = tokenizer.prompt(&ex.prompt)?;
                let chosen = tokenizer.response(&ex.prompt, &ex.chosen)?;
                let rejected = tokenizer.response(&ex.prompt, &ex.rejected)?;
                if let (Some(chosen), Some(rejected)) = (
                    Sequence::new(prompt.clone(), chosen, job.max_len),
                    Sequence::new(prompt, rejected, job.max_len),
                ) {
                    pairs.push(ScoredPair {
                        chosen,
                        rejected,
                        ref_chosen: 0.0,
                        ref_rejected: 0.0,
                    });
                }
            }
            if pairs.is_empty() {
                bail!("{}: no pair fits in {} tokens", path.display(), job.max_len);
            }
            (data.len(), Prepared::Dpo(pairs))
        }
    })
}

/// Held-out figures: SFT loss or DPO rewards.
fn evaluate(
    job: &TrainJob,
    model: &Llama,
    data: Option<&Prepared>,
) -> Result<(Option<f64>, Option<DpoStats>)> {
    Ok(match (data, &job.method) {
        (Some(Prepared::Sft(seqs)), _) => {
            (Some(sft_loss(model, seqs, job.params.batch_size)?), None)
        }
        (Some(Prepared::Dpo(pairs)), Method::Dpo(dpo)) => (
            None,
            Some(dpo_stats(model, pairs, dpo.beta, job.params.batch_size)?),
        ),
        _ => (None, None),
    })
}

enum Prepared {
    Sft(Vec<Sequence>),
    Dpo(Vec<ScoredPair>),
}

/// DPO: scores the training pairs under the reference; returns the seconds it took (part of
/// `train_seconds`: TRL's DPO does the same work inside its steps). SFT: nothing to do.
fn score_training_pairs(
    job: &TrainJob,
    model: &Llama,
    prepared: &mut Prepared,
    progress: &mut dyn FnMut(Progress),
) -> Result<f64> {
    let Prepared::Dpo(pairs) = prepared else {
        return Ok(0.0);
    };
    progress(Progress::Phase("scoring the reference model"));
    let started = Instant::now();
    score_reference(job, model, pairs)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Reference log-probabilities, once, before the policy trains.
fn score_reference(job: &TrainJob, policy: &Llama, pairs: &mut [ScoredPair]) -> Result<()> {
    let reference_model;
    let reference = match &job.reference {
        // The model being trained is the reference only before its first step and without
        // a continued adapter (M0 + A_t is not M0).
        Some(path) if path != &job.model || job.continue_adapter.is_some() => {
            let weights = Weights::load(path, job.dtype, &job.device)
                .with_context(|| format!("reference model {}", path.display()))?;
            reference_model = Llama::new(&weights, &Tuning::Frozen, 0)?;
            &reference_model
        }
        // The policy before its first step is the reference (LoRA starts with B = 0).
        _ => policy,
    };
    let chosen: Vec<&Sequence> = pairs.iter().map(|p| &p.chosen).collect();
    let rejected: Vec<&Sequence> = pairs.iter().map(|p| &p.rejected).collect();
    let rc = response_logprobs(reference, &chosen, job.params.batch_size)?;
    let rr = response_logprobs(reference, &rejected, job.params.batch_size)?;
    for (i, pair) in pairs.iter_mut().enumerate() {
        pair.ref_chosen = rc[i];
        pair.ref_rejected = rr[i];
    }
    Ok(())
}

fn export(job: &TrainJob, weights: &Weights, model: &Llama) -> Result<Vec<PathBuf>> {
    let mut outputs = Vec::new();
    let needs_merged = job.gguf.is_some() || job.hf;
    let merged = if needs_merged {
        Some(model.merged_weights()?)
    } else {
        None
    };
    if let (Some(ty), Some(merged)) = (job.gguf, &merged) {
        let Source::Gguf(source) = &weights.source else {
            bail!("a GGUF export needs a GGUF base model (its metadata and tokenizer are copied)");
        };
        export_gguf(
            source,
            model.config(),
            merged,
            ty,
            &job.out.join("model.gguf"),
        )?;
        outputs.push("model.gguf".into());
    }
    if let (true, Some(merged)) = (job.hf, &merged) {
        export_hf(model.config(), merged, &weights.source, &job.out.join("hf"))?;
        outputs.push("hf".into());
    }
    if let Some(lora) = model.lora_tensors() {
        let base = match &job.base_model_name {
            Some(name) => name.clone(),
            None => job.model.display().to_string(),
        };
        let gguf_base = match &weights.source {
            Source::Gguf(source) => Some(source),
            _ => None,
        };
        if job.peft || gguf_base.is_none() {
            export_peft(&lora, &base, &job.out.join("adapter"))?;
            outputs.push("adapter".into());
        }
        // Over a GGUF base, as llama.cpp applies it at run time (embedded engine,
        // llama-server --lora).
        if let Some(source) = gguf_base {
            let out = job.out.join("adapter.gguf");
            export_lora_gguf(source, model.config(), &lora, job.adapter_type, &out)?;
            outputs.push("adapter.gguf".into());
        }
    }
    Ok(outputs)
}

fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gguf")
}
