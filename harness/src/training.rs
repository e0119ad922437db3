//! The built-in trainer's settings, shared by `harness train` and `harness run`: one flag
//! group ([`TrainingArgs`], flattened into both), the one function that turns it into the
//! trainer's job ([`TrainingArgs::job`]), and the progress display of a job.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use trainer::job::{Method, Progress, TrainJob, TrainSummary};
use trainer::train::{DpoParams, TrainParams};
use trainer::{LoraConfig, Tuning};

use crate::progress;

/// How the trainer trains: tuning, optimisation, objective and threads. `harness train`
/// renames three of them (`--batch-size`, `--seed`, `--threads`), which `harness run` spends
/// on sampling.
#[derive(Debug, Args, Clone)]
pub struct TrainingArgs {
    /// Train every weight (the study's setting) instead of LoRA adapters.
    #[arg(long, conflicts_with = "lora_rank")]
    pub full: bool,
    /// LoRA rank r (the width of the low-rank update).
    #[arg(long, default_value_t = 16)]
    pub lora_rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    pub lora_alpha: f64,
    /// LoRA dropout on the adapters' input (SFT; DPO trains without dropout, as TRL's DPO
    /// does by default).
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f64,
    /// Projections that get adapters, comma-separated (q_proj, k_proj, v_proj, o_proj,
    /// gate_proj, up_proj, down_proj) or all-linear.
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    pub lora_targets: Vec<String>,
    /// Peak learning rate (default: 1e-5 full, 2e-4 LoRA; DPO: 5e-7 full, 5e-6 LoRA).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Passes over the data.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Sequences (SFT) or pairs (DPO) per training micro-batch.
    #[arg(long, default_value_t = 4)]
    pub train_batch_size: usize,
    /// Micro-batches accumulated per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Share of optimizer steps spent in linear warmup.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Learning-rate schedule after warmup: cosine (to 0) or constant.
    #[arg(long, default_value = "cosine")]
    pub schedule: trainer::optim::Schedule,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// AdamW weight decay (decoupled).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seed of the data order and of LoRA's initialisation (in the loop, also of the DPO
    /// pairing).
    #[arg(long, default_value_t = 42)]
    pub train_seed: u64,
    /// Longest prompt + response in tokens; longer responses are cut, and examples whose
    /// prompt alone does not fit are skipped (counted in train_summary.json).
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// DPO: beta, the strength of the pull towards the reference.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// DPO: label smoothing (conservative DPO), the assumed share of flipped preferences.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// DPO: weight of the chosen responses' NLL added to the loss (TRL's rpo_alpha).
    #[arg(long, default_value_t = 0.0)]
    pub nll_weight: f64,
    /// Trainer threads on the CPU (default: all cores).
    #[arg(long)]
    pub train_threads: Option<usize>,
    /// LoRA over a GGUF base: tensor type of adapter.gguf, the adapter as llama.cpp applies
    /// it (and the loop samples and continues). f16 halves the file (9.8 MB for
    /// SmolLM2-135M at rank 16); f32 keeps the trained values exactly.
    #[arg(long, value_enum, default_value_t = AdapterType::F16)]
    pub adapter_type: AdapterType,
}

/// Tensor type of a LoRA adapter.gguf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterType {
    F32,
    F16,
}

impl AdapterType {
    /// What runs made before the type was a setting wrote (their manifests lack it).
    pub fn before_it_was_a_setting() -> Self {
        AdapterType::F32
    }

    pub fn is_f32(&self) -> bool {
        *self == AdapterType::F32
    }

    pub fn gguf_type(self) -> trainer::checkpoint::GgufType {
        use trainer::checkpoint::GgufType;
        match self {
            AdapterType::F32 => GgufType::F32,
            AdapterType::F16 => GgufType::F16,
        }
    }
}

/// Tensor type of an exported model.gguf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportType {
    F32,
    F16,
    #[value(name = "q8_0")]
    #[serde(rename = "q8_0")]
    Q8_0,
    /// No GGUF export.
    None,
}

impl ExportType {
    /// The trainer's GGUF type (`None`: no GGUF export).
    pub fn gguf_type(self) -> Option<trainer::checkpoint::GgufType> {
        use trainer::checkpoint::GgufType;
        match self {
            ExportType::F32 => Some(GgufType::F32),
            ExportType::F16 => Some(GgufType::F16),
            ExportType::Q8_0 => Some(GgufType::Q8_0),
            ExportType::None => None,
        }
    }
}

/// The peak learning rate when none is given: TRL-style defaults per objective and tuning.
pub fn default_learning_rate(dpo: bool, lora: bool) -> f64 {
    match (dpo, lora) {
        (false, false) => 1e-5,
        (false, true) => 2e-4,
        (true, false) => 5e-7,
        (true, true) => 5e-6,
    }
}

impl TrainingArgs {
    /// Readies this process for training: the allocator's settings and the thread count of
    /// rayon's global pool (candle's CPU kernels and the optimizer run on it).
    pub fn prepare_process(&self) -> Result<()> {
        trainer::process::prepare_for_training();
        if let Some(threads) = self.train_threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()
                .context("setting the trainer's thread count")?;
        }
        Ok(())
    }

    /// The trainer's job with these settings: SFT or DPO (`dpo`) of `model` on `data` into
    /// `out`, at `learning_rate` (None: the objective's default for this tuning). The rest is
    /// the caller's to set (struct update): no held-out data, reference (DPO: the model being
    /// trained), separate tokenizer, continued adapter or merged export; a LoRA is written as
    /// adapter.gguf (GGUF base) and as PEFT's adapter/.
    pub fn job(
        &self,
        dpo: bool,
        learning_rate: Option<f64>,
        data: PathBuf,
        model: PathBuf,
        out: PathBuf,
    ) -> Result<TrainJob> {
        let lora = !self.full;
        Ok(TrainJob {
            method: match dpo {
                true => Method::Dpo(DpoParams {
                    beta: self.beta,
                    label_smoothing: self.label_smoothing,
                    nll_weight: self.nll_weight,
                }),
                false => Method::Sft,
            },
            data,
            eval_data: None,
            model,
            reference: None,
            tokenizer: None,
            tuning: match lora {
                true => Tuning::Lora(LoraConfig {
                    rank: self.lora_rank,
                    alpha: self.lora_alpha,
                    dropout: self.lora_dropout,
                    target_modules: self.lora_targets.clone(),
                }),
                false => Tuning::Full,
            },
            continue_adapter: None,
            base_model_name: None,
            training_data_stats: false,
            params: TrainParams {
                learning_rate: learning_rate.unwrap_or(default_learning_rate(dpo, lora)),
                epochs: self.epochs,
                batch_size: self.train_batch_size,
                grad_accum: self.grad_accum,
                warmup_ratio: self.warmup_ratio,
                schedule: self.schedule,
                max_grad_norm: self.max_grad_norm,
                adamw: trainer::optim::AdamWParams {
                    weight_decay: self.weight_decay,
                    ..Default::default()
                },
                seed: self.train_seed,
            },
            max_len: self.max_len,
            out,
            gguf: None,
            hf: false,
            peft: true,
            adapter_type: self.adapter_type.gguf_type(),
            device: device()?,
            dtype: DType::F32,
        })
    }
}

/// Runs a training job behind a progress bar (steps, loss, rate, ETA) on a terminal, and
/// with a line per phase and per tenth of the steps otherwise.
pub fn run_job(job: &TrainJob, label: &str) -> Result<TrainSummary> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} (ETA {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut log: Option<progress::Log> = None;
    let summary = trainer::job::run(job, &mut |p| match p {
        Progress::Phase(what) => {
            bar.set_message(format!("{label}: {what}"));
            if bar.is_hidden() {
                progress::phase(&format!("{label}: {what}"));
            }
        }
        Progress::Step(s) => {
            bar.set_length(s.total_steps);
            bar.set_position(s.step);
            let mut msg = format!(
                "{label}: epoch {} loss {:.4} lr {:.2e} |g| {:.3} {:.0} tok/s",
                s.epoch, s.loss, s.learning_rate, s.grad_norm, s.tokens_per_second
            );
            if let Some(d) = &s.dpo {
                msg.push_str(&format!(" margin {:.3} acc {:.2}", d.margin, d.accuracy));
            }
            let log = log.get_or_insert_with(|| {
                progress::Log::new(&format!("{label}: steps"), s.total_steps as usize)
            });
            log.tick(
                s.step as usize,
                &format!("loss {:.4} {:.0} tok/s", s.loss, s.tokens_per_second),
            );
            bar.set_message(msg);
        }
    })?;
    bar.finish_and_clear();
    Ok(summary)
}

/// The first CUDA device when built with `cuda` and one is present, else the CPU.
fn device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    if candle_core::utils::cuda_is_available() {
        return Ok(Device::new_cuda(0)?);
    }
    Ok(Device::Cpu)
}
