//! Command-line interface: every subcommand and flag, each documented for `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Measures whether iterative self-improvement of a language model is progress or regress:
/// samples a model, grades the samples on GSM8K, MATH, CommonsenseQA, MBPP, SVAMP and a
/// synthetic arithmetic task, and reports the study's reversal metrics.
#[derive(Debug, Parser)]
#[command(name = "harness", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the prompt a problem is asked with.
    Prompt(PromptArgs),
    /// Grade a sample file (or a task's gold solutions) and print the accuracy.
    Grade(GradeArgs),
    /// List the tasks, their splits and sizes.
    Tasks(DataArgs),
}

/// Where task data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Read data files from this directory (laid out like benchmarks/data, plain or .gz)
    /// instead of the copies built into the binary. Checksums are verified either way.
    #[arg(long, env = "HARNESS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seed of generated tasks (arith); the same seed and generator version always give
    /// the same problems.
    #[arg(long, default_value_t = benchmarks::arith::DEFAULT_SEED)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct PromptArgs {
    /// Task name: gsm8k, math, csqa, mbpp, svamp or arith.
    #[arg(long)]
    pub task: String,
    /// Problem id (as in sample files; `harness tasks` shows the id format).
    #[arg(long)]
    pub id: String,
    /// Split to look in; by default the evaluation split, then the others.
    #[arg(long)]
    pub split: Option<String>,
    /// Prompt template; by default the task's own.
    #[arg(long)]
    pub template: Option<String>,
    /// Chat messages (for instruct models with a chat template) or plain text (base models).
    #[arg(long, value_enum, default_value_t = Style::Chat)]
    pub style: Style,
    /// Print the prompt as JSON (as it appears in sample files).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Prompt form.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Style {
    Chat,
    Text,
}

#[derive(Debug, Args)]
pub struct GradeArgs {
    /// Task the responses answer.
    #[arg(long)]
    pub task: String,
    /// Sample file to grade (JSON Lines; only `problem_id` and `response` are required).
    #[arg(long, required_unless_present = "gold", conflicts_with = "gold")]
    pub input: Option<PathBuf>,
    /// Grade the task's gold solutions as if they were responses.
    #[arg(long)]
    pub gold: bool,
    /// Split of the problems: for --gold, the split to grade (default: all splits); for
    /// --input, the split of lines that do not name one (default: the evaluation split).
    #[arg(long)]
    pub split: Option<String>,
    /// Write the graded samples here (written atomically).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print up to this many incorrect responses with the rule and reason.
    #[arg(long, default_value_t = 10)]
    pub show_failures: usize,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Limits of the sandbox that runs MBPP programs.
#[derive(Debug, Args, Clone)]
pub struct SandboxArgs {
    /// Programs run at the same time (default: the number of CPUs).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Wall-clock limit per program, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Address-space limit per program, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_mb: u64,
    /// Python interpreter for the programs (a bare name is looked up in /usr/bin,
    /// /usr/local/bin, /bin, then PATH).
    #[arg(long, default_value = "python3", value_name = "PATH")]
    pub python: std::path::PathBuf,
}
