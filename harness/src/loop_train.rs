//! Training one round of the loop: the built-in candle trainer's job, or the user's
//! `--train-cmd` (TRL, DeepSpeed, a cluster job) given the same inputs through environment
//! variables.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use trainer::job::{Method, TrainJob};
use trainer::train::{DpoParams, TrainParams};
use trainer::{LoraConfig, Tuning};

use crate::cmd::run_args::LoopTrainArgs;
use crate::cmd::train_args::{ExportType, default_learning_rate};
use crate::shell::run_logged;

/// One round's training: what it starts from and where it writes.
pub struct RoundJob<'a> {
    /// The round of the model being trained (1: M1).
    pub round: u32,
    /// The data set (TRL format: SFT prompt/completion, DPO prompt/chosen/rejected).
    pub data: &'a Path,
    pub dpo: bool,
    /// M0, the base model.
    pub m0: &'a Path,
    /// M_{round-1}'s folder; None for M1.
    pub previous: Option<&'a Path>,
    /// DPO's reference model (a GGUF or a Hugging Face folder); None: the model training
    /// starts from.
    pub reference: Option<PathBuf>,
    /// Also write the merged model as `hf/` when M0 is a Hugging Face folder (M1, when a
    /// later round takes it as DPO's reference: a LoRA round over a folder writes only its
    /// adapter otherwise).
    pub export_whole: bool,
    /// The folder to write (created by the trainer).
    pub out: &'a Path,
}

/// M1 as a model the trainer loads whole, for `--dpo-ref m1`: its `model.gguf` (M0 a GGUF),
/// else its `hf/` (M0 a Hugging Face folder).
pub fn m1_reference(m1: &Path) -> Result<PathBuf> {
    let (gguf, hf) = (m1.join("model.gguf"), m1.join("hf"));
    if gguf.is_file() {
        return Ok(gguf);
    }
    if hf.join("config.json").is_file() {
        return Ok(hf);
    }
    bail!(
        "--dpo-ref m1: M1 in {} has neither model.gguf nor hf/ (a merged model); an --m1 folder \
         over a Hugging Face M0 must hold hf/ (harness train --export-hf)",
        m1.display()
    )
}

impl RoundJob<'_> {
    /// The weights training starts from, and the LoRA adapter it continues.
    fn start(&self, lora: bool) -> (PathBuf, Option<PathBuf>) {
        match (lora, self.previous) {
            (true, Some(prev)) => (self.m0.to_path_buf(), Some(prev.join("adapter"))),
            // M0 given as a Hugging Face folder: each round continues from the previous hf/.
            (false, Some(prev)) if self.m0.is_dir() => (prev.join("hf"), None),
            (false, Some(prev)) => (prev.join("model.gguf"), None),
            (_, None) => (self.m0.to_path_buf(), None),
        }
    }
}

/// The learning rate, epochs and export type of a round.
fn round_settings(t: &LoopTrainArgs, job: &RoundJob) -> (f64, usize, ExportType) {
    let lora = !t.full;
    let given = if job.dpo { t.dpo_lr } else { t.lr };
    let learning_rate = given.unwrap_or(default_learning_rate(job.dpo, lora));
    let epochs = match job.previous {
        None => t.m1_epochs,
        Some(_) => t.epochs,
    };
    let export = t.gguf_type.unwrap_or(match lora {
        true => ExportType::F16,
        false => ExportType::F32,
    });
    (learning_rate, epochs, export)
}

/// The candle trainer's job for a round.
pub fn candle_job(t: &LoopTrainArgs, job: &RoundJob) -> Result<TrainJob> {
    let lora = !t.full;
    let (model, continue_adapter) = job.start(lora);
    let (learning_rate, epochs, export) = round_settings(t, job);
    // A GGUF export copies M0's GGUF metadata; M0 as a Hugging Face folder (served by a
    // server) gets the adapter (LoRA) or hf/ (full) instead.
    let from_folder = job.m0.is_dir();
    let gguf = match (from_folder, export.gguf_type()) {
        (true, _) => None,
        (false, Some(gguf)) => Some(gguf),
        (false, None) => {
            bail!("the loop samples each round's model.gguf: --gguf-type none does not apply")
        }
    };
    Ok(TrainJob {
        method: match job.dpo {
            true => Method::Dpo(DpoParams {
                beta: t.beta,
                label_smoothing: t.label_smoothing,
                nll_weight: t.nll_weight,
            }),
            false => Method::Sft,
        },
        data: job.data.to_path_buf(),
        eval_data: None,
        model,
        reference: job.reference.clone(),
        tokenizer: None,
        tuning: match lora {
            true => Tuning::Lora(LoraConfig {
                rank: t.lora_rank,
                alpha: t.lora_alpha,
                dropout: t.lora_dropout,
                target_modules: t.lora_targets.clone(),
            }),
            false => Tuning::Full,
        },
        continue_adapter,
        base_model_name: Some(job.m0.display().to_string()),
        loss_on_training_data: false,
        params: TrainParams {
            learning_rate,
            epochs,
            batch_size: t.train_batch_size,
            grad_accum: t.grad_accum,
            warmup_ratio: t.warmup_ratio,
            schedule: t.schedule,
            max_grad_norm: t.max_grad_norm,
            adamw: trainer::optim::AdamWParams {
                weight_decay: t.weight_decay,
                ..Default::default()
            },
            seed: t.train_seed,
        },
        max_len: t.max_len,
        out: job.out.to_path_buf(),
        gguf,
        hf: from_folder && (!lora || job.export_whole),
        device: crate::cmd::train::device()?,
        dtype: candle_core::DType::F32,
    })
}

/// Runs `--train-cmd` for a round, its output in `log`, and checks that it left each of
/// `needs` (paths relative to the output folder) behind.
pub fn run_external(
    cmd: &str,
    t: &LoopTrainArgs,
    job: &RoundJob,
    needs: &[&str],
    log: &Path,
) -> Result<()> {
    std::fs::create_dir_all(job.out)?;
    let envs = external_env(t, job, needs)?;
    run_logged("--train-cmd", cmd, &envs, log, None)?;
    let missing: Vec<&str> = needs
        .iter()
        .copied()
        .filter(|n| !job.out.join(n).exists())
        .collect();
    if !missing.is_empty() {
        bail!(
            "--train-cmd `{cmd}` exited successfully but left no {} in {} (its output: {})",
            missing.join(", "),
            job.out.display(),
            log.display()
        );
    }
    Ok(())
}

/// The environment of `--train-cmd` (documented in the README): the inputs the candle
/// trainer would use, as absolute paths, and every trainer setting.
fn external_env(
    t: &LoopTrainArgs,
    job: &RoundJob,
    needs: &[&str],
) -> Result<Vec<(String, String)>> {
    let path = |p: &Path| -> Result<String> { Ok(std::path::absolute(p)?.display().to_string()) };
    let optional = |p: Option<&Path>| -> Result<String> { p.map_or(Ok(String::new()), path) };
    let lora = !t.full;
    let (model, adapter) = job.start(lora);
    let (learning_rate, epochs, export) = round_settings(t, job);
    let envs = vec![
        ("HARNESS_BIN", path(&std::env::current_exe()?)?),
        ("HARNESS_ROUND", job.round.to_string()),
        (
            "HARNESS_METHOD",
            if job.dpo { "dpo" } else { "sft" }.to_string(),
        ),
        ("HARNESS_DATA", path(job.data)?),
        ("HARNESS_OUT", path(job.out)?),
        ("HARNESS_NEEDS", needs.join(",")),
        ("HARNESS_BASE_MODEL", path(job.m0)?),
        (
            "HARNESS_TUNING",
            if lora { "lora" } else { "full" }.to_string(),
        ),
        ("HARNESS_INIT_MODEL", path(&model)?),
        ("HARNESS_INIT_ADAPTER", optional(adapter.as_deref())?),
        ("HARNESS_PREVIOUS", optional(job.previous)?),
        ("HARNESS_REFERENCE", optional(job.reference.as_deref())?),
        ("HARNESS_LR", learning_rate.to_string()),
        ("HARNESS_EPOCHS", epochs.to_string()),
        ("HARNESS_BATCH_SIZE", t.train_batch_size.to_string()),
        ("HARNESS_GRAD_ACCUM", t.grad_accum.to_string()),
        ("HARNESS_WARMUP_RATIO", t.warmup_ratio.to_string()),
        (
            "HARNESS_SCHEDULE",
            format!("{:?}", t.schedule).to_lowercase(),
        ),
        ("HARNESS_MAX_GRAD_NORM", t.max_grad_norm.to_string()),
        ("HARNESS_WEIGHT_DECAY", t.weight_decay.to_string()),
        ("HARNESS_SEED", t.train_seed.to_string()),
        ("HARNESS_MAX_LEN", t.max_len.to_string()),
        ("HARNESS_LORA_RANK", t.lora_rank.to_string()),
        ("HARNESS_LORA_ALPHA", t.lora_alpha.to_string()),
        ("HARNESS_LORA_DROPOUT", t.lora_dropout.to_string()),
        ("HARNESS_LORA_TARGETS", t.lora_targets.join(",")),
        ("HARNESS_BETA", t.beta.to_string()),
        ("HARNESS_LABEL_SMOOTHING", t.label_smoothing.to_string()),
        ("HARNESS_NLL_WEIGHT", t.nll_weight.to_string()),
        ("HARNESS_GGUF_TYPE", format!("{export:?}").to_lowercase()),
    ];
    Ok(envs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m1_reference_is_the_gguf_else_the_merged_folder() {
        let dir = tempfile::tempdir().unwrap();
        let m1 = dir.path();
        let error = m1_reference(m1).unwrap_err().to_string();
        assert!(error.contains("neither model.gguf nor hf/"), "{error}");
        std::fs::create_dir(m1.join("hf")).unwrap();
        std::fs::write(m1.join("hf/config.json"), "{}").unwrap();
        assert_eq!(m1_reference(m1).unwrap(), m1.join("hf"));
        std::fs::write(m1.join("model.gguf"), "").unwrap();
        assert_eq!(m1_reference(m1).unwrap(), m1.join("model.gguf"));
    }
}
