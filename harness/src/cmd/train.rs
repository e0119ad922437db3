//! `harness train`: SFT or DPO on a JSON Lines file, writing the next round's model.

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use trainer::job::{Method, Progress, TrainJob};
use trainer::train::{DpoParams, TrainParams};
use trainer::{LoraConfig, Tuning};

use super::train_args::{TrainArgs, TrainMethod, default_learning_rate};

pub fn run(args: TrainArgs) -> Result<()> {
    trainer::process::prepare_for_training();
    if let Some(threads) = args.threads {
        // candle's CPU kernels and the optimizer run on rayon's global pool.
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("setting the thread count")?;
    }
    let job = job_of(&args)?;
    let summary = run_job(&job, "training")?;
    println!(
        "{} on {} examples ({} skipped as too long): {} steps in {:.1} s, {:.0} tokens/s, {} trainable parameters",
        summary.method,
        summary.examples,
        summary.skipped_too_long,
        summary.steps,
        summary.seconds,
        summary.tokens_per_second,
        summary.trainable_parameters
    );
    if let (Some(before), Some(after)) = (summary.loss_before, summary.loss_after) {
        println!("loss on the training data: {before:.4} -> {after:.4}");
    }
    if let Some(d) = &summary.dpo_after {
        println!(
            "after training: chosen reward {:.4}, rejected reward {:.4}, margin {:.4}, accuracy {:.3}",
            d.chosen_reward, d.rejected_reward, d.margin, d.accuracy
        );
    }
    if let (Some(before), Some(after)) = (summary.eval_loss_before, summary.eval_loss_after) {
        println!("held-out loss: {before:.4} -> {after:.4}");
    }
    if let (Some(b), Some(a)) = (&summary.eval_dpo_before, &summary.eval_dpo_after) {
        println!(
            "held-out margin: {:.4} -> {:.4}, accuracy {:.3} -> {:.3}",
            b.margin, a.margin, b.accuracy, a.accuracy
        );
    }
    for output in &summary.outputs {
        println!("wrote {}", output.display());
    }
    Ok(())
}

fn job_of(args: &TrainArgs) -> Result<TrainJob> {
    let model = match &args.model {
        Some(path) => path.clone(),
        None => backends::models::ensure(&backends::models::SMOLLM2_135M)?,
    };
    let lora = !args.full;
    let dpo = args.method == TrainMethod::Dpo;
    let tuning = if lora {
        Tuning::Lora(LoraConfig {
            rank: args.lora_rank,
            alpha: args.lora_alpha,
            dropout: args.lora_dropout,
            target_modules: args.lora_targets.clone(),
        })
    } else {
        Tuning::Full
    };
    let method = if dpo {
        Method::Dpo(DpoParams {
            beta: args.beta,
            label_smoothing: args.label_smoothing,
            nll_weight: args.nll_weight,
        })
    } else {
        Method::Sft
    };
    // A Hugging Face base cannot become a GGUF here (no tokenizer metadata to copy).
    let gguf = args
        .gguf_type
        .gguf_type()
        .filter(|_| model.extension().is_some_and(|e| e == "gguf"));
    Ok(TrainJob {
        method,
        data: args.data.clone(),
        eval_data: args.eval_data.clone(),
        model,
        reference: args.reference.clone(),
        tokenizer: args.tokenizer.clone(),
        tuning,
        continue_adapter: args.continue_adapter.clone(),
        base_model_name: None,
        loss_on_training_data: args.loss_on_training_data,
        params: TrainParams {
            learning_rate: args.lr.unwrap_or(default_learning_rate(dpo, lora)),
            epochs: args.epochs,
            batch_size: args.batch_size,
            grad_accum: args.grad_accum,
            warmup_ratio: args.warmup_ratio,
            schedule: args.schedule,
            max_grad_norm: args.max_grad_norm,
            adamw: trainer::optim::AdamWParams {
                weight_decay: args.weight_decay,
                ..Default::default()
            },
            seed: args.seed,
        },
        max_len: args.max_len,
        out: args.out.clone(),
        gguf,
        hf: args.export_hf,
        device: device()?,
        dtype: DType::F32,
    })
}

/// Runs a training job behind a progress bar (steps, loss, rate, ETA) on a terminal, and
/// with a line per phase and per tenth of the steps otherwise.
pub fn run_job(job: &TrainJob, label: &str) -> Result<trainer::job::TrainSummary> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} (ETA {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut log: Option<crate::progress::Log> = None;
    let summary = trainer::job::run(job, &mut |p| match p {
        Progress::Phase(what) => {
            bar.set_message(format!("{label}: {what}"));
            if bar.is_hidden() {
                crate::progress::phase(&format!("{label}: {what}"));
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
                crate::progress::Log::new(&format!("{label}: steps"), s.total_steps as usize)
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
pub(crate) fn device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    if candle_core::utils::cuda_is_available() {
        return Ok(Device::new_cuda(0)?);
    }
    Ok(Device::Cpu)
}
