//! Training one model of the loop: the built-in candle trainer's job, or the user's
//! `--train-cmd` (TRL, DeepSpeed, a cluster job) given the same inputs through environment
//! variables.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use trainer::checkpoint::peft_to_lora_gguf;
use trainer::job::TrainJob;

use super::flags::{DpoReference, LoopMethod, LoopTrainArgs};
use super::serve::Engine;
use super::setup::{Loop, adapter_rounds};
use crate::flags::BackendKind;
use crate::progress;
use crate::shell::run_logged;
use crate::training::{ExportType, default_learning_rate, run_job};

impl Loop<'_> {
    /// Trains into `round/model` (through `round/model.partial`, renamed when done).
    pub(super) fn train(
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
        let export_whole = number == 1 && self.args.dpo_ref == DpoReference::M1;
        let embedded = adapter_rounds(self.args);
        let forms = AdapterForms::of(self.args);
        let job = RoundJob {
            round: number,
            data,
            dpo,
            m0: &self.m0,
            previous,
            reference,
            export_whole,
            merged: !embedded || self.args.training.export_merged || export_whole,
            peft: forms.peft,
            continue_sampled: forms.continue_sampled,
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
                // A trainer outside writes PEFT's format; the engine applies llama.cpp's.
                let adapter_gguf = partial.join("adapter.gguf");
                if embedded && !adapter_gguf.exists() {
                    let ty = self.args.training.settings.adapter_type.gguf_type();
                    peft_to_lora_gguf(&self.m0, &partial.join("adapter"), ty, &adapter_gguf)?;
                }
            }
            None => {
                run_job(&candle_job(&self.args.training, &job)?, &label)?;
            }
        }
        self.phases.training += started.elapsed().as_secs_f64();
        std::fs::rename(&partial, &out)
            .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
        Ok(())
    }

    /// What a round's model folder must hold for the sampling engine (an external trainer's
    /// PEFT adapter is converted to adapter.gguf after it).
    fn checkpoint_needs(&self) -> Vec<&'static str> {
        match (self.args.backend, self.args.serving.lora_hotload) {
            (BackendKind::Llamacpp, _) if adapter_rounds(self.args) => {
                vec!["adapter/adapter_config.json"]
            }
            (BackendKind::Llamacpp, _) => vec!["model.gguf"],
            (BackendKind::Openai, true) => vec!["adapter/adapter_config.json"],
            // The hook decides what it serves.
            (BackendKind::Openai, false) => Vec::new(),
        }
    }
}

/// The forms a LoRA round's adapter takes in the loop.
#[derive(Debug, PartialEq)]
pub(super) struct AdapterForms {
    /// PEFT's adapter/ is written by the built-in trainer: a server loads it (or a hook may
    /// serve it), or --export-peft asks for it. (An external trainer writes it itself.)
    peft: bool,
    /// The next round continues adapter.gguf, the form the embedded engine sampled (f16 by
    /// default), not adapter/: the built-in trainer over the embedded engine. An external
    /// trainer continues adapter/, the form it reads.
    pub(super) continue_sampled: bool,
}

impl AdapterForms {
    pub(super) fn of(args: &super::flags::RunArgs) -> Self {
        let embedded = adapter_rounds(args);
        AdapterForms {
            peft: !embedded || args.training.export_peft,
            continue_sampled: embedded && args.training.train_cmd.is_none(),
        }
    }
}

/// One round's training: what it starts from and where it writes.
struct RoundJob<'a> {
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
    /// Write the merged model.gguf (M0 a GGUF): every round but the embedded engine's LoRA
    /// rounds (sampled as M0 + adapter.gguf), unless --export-merged or M1 as DPO's reference.
    pub merged: bool,
    /// LoRA: write PEFT's adapter/ (a server loads it; --export-peft).
    pub peft: bool,
    /// LoRA: continue the previous round's adapter.gguf, the adapter the embedded engine
    /// sampled (f16 by default), rather than its PEFT adapter/ (what a server sampled and an
    /// external trainer reads).
    pub continue_sampled: bool,
    /// The folder to write (created by the trainer).
    pub out: &'a Path,
}

/// M1 as a model the trainer loads whole, for `--dpo-ref m1`: its `model.gguf` (M0 a GGUF),
/// else its `hf/` (M0 a Hugging Face folder).
fn m1_reference(m1: &Path) -> Result<PathBuf> {
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
            (true, Some(prev)) => {
                let adapter = match self.continue_sampled {
                    true => prev.join("adapter.gguf"),
                    false => prev.join("adapter"),
                };
                (self.m0.to_path_buf(), Some(adapter))
            }
            // M0 given as a Hugging Face folder: each round continues from the previous hf/.
            (false, Some(prev)) if self.m0.is_dir() => (prev.join("hf"), None),
            (false, Some(prev)) => (prev.join("model.gguf"), None),
            (_, None) => (self.m0.to_path_buf(), None),
        }
    }
}

/// The learning rate, epochs and export type of a round (`none` when it exports no merged
/// model).
fn round_settings(t: &LoopTrainArgs, job: &RoundJob) -> (f64, usize, ExportType) {
    let lora = !t.settings.full;
    let given = if job.dpo { t.dpo_lr } else { t.settings.lr };
    let learning_rate = given.unwrap_or(default_learning_rate(job.dpo, lora));
    let epochs = match job.previous {
        None => t.m1_epochs,
        Some(_) => t.settings.epochs,
    };
    let export = match job.merged {
        true => t.gguf_type.unwrap_or(match lora {
            true => ExportType::F16,
            false => ExportType::F32,
        }),
        false => ExportType::None,
    };
    (learning_rate, epochs, export)
}

/// The candle trainer's job for a round.
fn candle_job(t: &LoopTrainArgs, job: &RoundJob) -> Result<TrainJob> {
    let lora = !t.settings.full;
    let (model, continue_adapter) = job.start(lora);
    let (learning_rate, epochs, export) = round_settings(t, job);
    // A GGUF export copies M0's GGUF metadata; M0 as a Hugging Face folder (served by a
    // server) gets the adapter (LoRA) or hf/ (full) instead.
    let from_folder = job.m0.is_dir();
    let gguf = match (from_folder || !job.merged, export.gguf_type()) {
        (true, _) => None,
        (false, Some(gguf)) => Some(gguf),
        (false, None) => {
            bail!("the loop needs each round's model.gguf here: --gguf-type none does not apply")
        }
    };
    let (data, out) = (job.data.to_path_buf(), job.out.to_path_buf());
    let mut train = t
        .settings
        .job(job.dpo, Some(learning_rate), data, model, out)?;
    train.params.epochs = epochs;
    train.reference = job.reference.clone();
    train.continue_adapter = continue_adapter;
    train.base_model_name = Some(job.m0.display().to_string());
    train.gguf = gguf;
    train.hf = from_folder && (!lora || job.export_whole);
    train.peft = job.peft;
    Ok(train)
}

/// Runs `--train-cmd` for a round, its output in `log`, and checks that it left each of
/// `needs` (paths relative to the output folder) behind.
fn run_external(
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
    let lora = !t.settings.full;
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
        (
            "HARNESS_BATCH_SIZE",
            t.settings.train_batch_size.to_string(),
        ),
        ("HARNESS_GRAD_ACCUM", t.settings.grad_accum.to_string()),
        ("HARNESS_WARMUP_RATIO", t.settings.warmup_ratio.to_string()),
        (
            "HARNESS_SCHEDULE",
            format!("{:?}", t.settings.schedule).to_lowercase(),
        ),
        (
            "HARNESS_MAX_GRAD_NORM",
            t.settings.max_grad_norm.to_string(),
        ),
        ("HARNESS_WEIGHT_DECAY", t.settings.weight_decay.to_string()),
        ("HARNESS_SEED", t.settings.train_seed.to_string()),
        ("HARNESS_MAX_LEN", t.settings.max_len.to_string()),
        ("HARNESS_LORA_RANK", t.settings.lora_rank.to_string()),
        ("HARNESS_LORA_ALPHA", t.settings.lora_alpha.to_string()),
        ("HARNESS_LORA_DROPOUT", t.settings.lora_dropout.to_string()),
        ("HARNESS_LORA_TARGETS", t.settings.lora_targets.join(",")),
        ("HARNESS_BETA", t.settings.beta.to_string()),
        (
            "HARNESS_LABEL_SMOOTHING",
            t.settings.label_smoothing.to_string(),
        ),
        ("HARNESS_NLL_WEIGHT", t.settings.nll_weight.to_string()),
        ("HARNESS_GGUF_TYPE", format!("{export:?}").to_lowercase()),
    ];
    Ok(envs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `harness run` with these flags, as the command line parses them.
    fn forms(flags: &[&str]) -> AdapterForms {
        use clap::Parser;
        let line = ["harness", "run"].iter().chain(flags);
        match crate::cli::Cli::try_parse_from(line).unwrap().command {
            crate::cli::Command::Run(args) => AdapterForms::of(&args),
            _ => unreachable!(),
        }
    }

    #[test]
    fn peft_is_written_where_it_is_read_and_rounds_continue_what_was_sampled() {
        let (yes, no) = (true, false);
        let form = |peft, continue_sampled| AdapterForms {
            peft,
            continue_sampled,
        };
        assert_eq!(
            forms(&[]),
            form(no, yes),
            "embedded engine, built-in trainer"
        );
        assert_eq!(forms(&["--export-peft"]), form(yes, yes));
        assert_eq!(
            forms(&["--trainer", "external", "--train-cmd", "t.sh"]),
            form(no, no),
            "the external trainer writes and continues PEFT's adapter/ itself"
        );
        let server = [
            "--backend",
            "openai",
            "--base-url",
            "http://h:1",
            "--model",
            "m",
        ];
        assert_eq!(forms(&server), form(yes, no), "a server samples adapter/");
    }

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
