//! The self-improvement loop of SPEC.md (Algorithm 1), end to end: `harness run`.
//!
//! Where each step is:
//!
//! - [`sequence`]: the round sequence, top to bottom as Algorithm 1 reads: M1, then for
//!   t = 2..T and each method, train M_t, evaluate it and sample, report.
//! - [`round`]: one round: M1 from the gold pairs, D_t from M_{t-1}'s graded samples of the
//!   training questions, and the sampling step (evaluation sets and training questions in one
//!   call of the engine, graded).
//! - [`train`]: training one model: the built-in trainer's job or the user's `--train-cmd`.
//! - [`serve`]: the engine pointed at a round's model: the embedded engine loads its GGUF, a
//!   server hot-loads its adapter (vLLM) or is restarted by the serve hook.
//! - [`report`]: each method's reports after each round, the comparisons between rounds and
//!   between methods, and `harness report` on a loop directory.
//! - [`table`]: the per-round table printed after each round.
//! - [`setup`]: the loop's fixed inputs, built once from the flags: settings, problems,
//!   evaluation sets, the directory.
//! - [`dir`]: the loop directory (what each step writes, so a stopped run continues) and its
//!   typed manifest.
//! - [`flags`]: `harness run`'s flags.
//! - [`dry_run`]: `--dry-run`, what a run needs checked without running it.
//!
//! Rounds 0 and 1 are shared by the methods. Every step writes atomically and is skipped
//! when its output exists, so the same command continues a stopped run and ends with the
//! same files.

pub mod dir;
mod dry_run;
pub mod flags;
mod report;
mod round;
mod sequence;
mod serve;
mod setup;
mod table;
mod train;

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::flags::BackendKind;
use flags::{RunArgs, TrainerKind};
pub use report::report_loop;
use serve::Engine;
use setup::Loop;

/// `harness run`: checks the flags, finds M0, and runs the loop in its directory.
pub fn run(args: RunArgs) -> Result<()> {
    args.training.settings.prepare_process()?;
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if (args.training.trainer == TrainerKind::External) != args.training.train_cmd.is_some() {
        bail!("--trainer external and --train-cmd CMD go together");
    }
    if args.dry_run {
        return dry_run::dry_run(&args, args.model.as_ref().map(PathBuf::from));
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

fn default_out() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("run-{now}"))
}
