//! `harness train`: SFT or DPO on a JSON Lines file, writing the next round's model.

use anyhow::Result;
use trainer::job::TrainJob;

use crate::cli::{TrainArgs, TrainMethod};
use crate::training::run_job;

pub fn run(args: TrainArgs) -> Result<()> {
    args.training.prepare_process()?;
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
        println!("wrote {}", args.out.join(output).display());
    }
    Ok(())
}

fn job_of(args: &TrainArgs) -> Result<TrainJob> {
    let model = match &args.model {
        Some(path) => path.clone(),
        None => backends::models::ensure(&backends::models::SMOLLM2_135M)?,
    };
    let dpo = args.method == TrainMethod::Dpo;
    let t = &args.training;
    let mut job = t.job(dpo, t.lr, args.data.clone(), model, args.out.clone())?;
    // A Hugging Face base cannot become a GGUF here (no tokenizer metadata to copy).
    job.gguf = args
        .gguf_type
        .gguf_type()
        .filter(|_| job.model.extension().is_some_and(|e| e == "gguf"));
    job.hf = args.export_hf;
    job.eval_data = args.eval_data.clone();
    job.reference = args.reference.clone();
    job.tokenizer = args.tokenizer.clone();
    job.continue_adapter = args.continue_adapter.clone();
    job.training_data_stats = args.training_data_stats;
    Ok(job)
}
