//! Command-line interface: every subcommand and flag, each documented for `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::flags::{BackendKind, DataArgs, LlamaCppArgs, OpenAiArgs, SandboxArgs, Style};
use crate::study::flags::RunArgs;
use crate::training::{ExportType, TrainingArgs};

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
    /// One evaluation round: greedy pass@1 plus N samples per problem (pass@k), graded,
    /// written to a run directory.
    Bench(Box<BenchArgs>),
    /// The self-improvement loop: M1 = SFT on gold pairs, then each round sample the
    /// training questions, grade, build the data set and train the next model (SFT, DPO or
    /// SFT-DPO), evaluating every model and reporting every reversal metric per round.
    /// Resumable: the same command continues a stopped run.
    Run(Box<RunArgs>),
    /// Fine-tune a model on graded samples (SFT or DPO) and write the next round's
    /// checkpoint (GGUF for llama.cpp, PEFT adapter and safetensors for vLLM).
    Train(Box<TrainArgs>),
    /// Recompute every metric of a run directory from its sample files and rewrite its
    /// CSV reports and plots.
    Report(ReportArgs),
    /// Put runs side by side: one CSV and one plot per metric, greedy agreement with the
    /// first run, sampling throughput, and a table.
    Compare(CompareArgs),
    /// Fetch the default model into the cache (done automatically on first use) and print
    /// its path.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Fetch the SentenceBERT encoder (all-MiniLM-L6-v2) instead and print its folder.
    #[arg(long)]
    pub sentence_encoder: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory (as written by `harness bench`: manifest.json, samples/*.jsonl).
    pub run_dir: PathBuf,
    /// Grade every response again (with this build's graders) and rewrite the sample files
    /// before measuring.
    #[arg(long)]
    pub regrade: bool,
    /// Skip SentenceBERT diversity (no encoder fetch, no embedding time).
    #[arg(long)]
    pub no_semantic: bool,
    /// Bootstrap resamples of the 95% intervals (0: none); default: what the run recorded,
    /// else 1000.
    #[arg(long)]
    pub bootstrap: Option<u32>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run directories, each with a metrics.csv (from `harness bench` or `harness report`),
    /// or one method of a loop (`RUN/sft`), or loop directories (all of them: compared
    /// method by method); greedy agreement and paired changes are measured against the
    /// first.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Where the comparison's CSVs and plots go (default: runs/compare-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap resamples of the paired changes' 95% intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: u32,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub data: DataArgs,
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

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Inference engine.
    #[arg(long, value_enum, default_value_t = BackendKind::Llamacpp)]
    pub backend: BackendKind,
    /// llamacpp: a GGUF file (default: SmolLM2-135M-Instruct Q4_1, fetched on first use);
    /// openai: the served model id (required).
    #[arg(long)]
    pub model: Option<String>,
    /// llamacpp: a LoRA adapter GGUF applied over --model at run time, as `llama-server
    /// --lora` does (`harness train` writes one as adapter.gguf).
    #[arg(long, value_name = "ADAPTER.gguf")]
    pub lora: Option<PathBuf>,
    /// Tasks to evaluate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "arith")]
    pub task: Vec<String>,
    /// Split to evaluate (default: each task's evaluation split).
    #[arg(long)]
    pub split: Option<String>,
    /// Evaluate K problems, evenly spaced through the split (0: all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Samples per problem at the sampling temperature (0: greedy only).
    #[arg(long, default_value_t = 4)]
    pub n: u32,
    /// Sampling temperature of the N samples (greedy pass@1 always uses 0).
    #[arg(long, default_value_t = 0.75)]
    pub temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Top-k sampling (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Min-p sampling (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Largest number of new tokens per response (default: each task's, see `harness
    /// tasks`).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Generate through end-of-sequence tokens up to --max-tokens (throughput benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Base seed: sample j of a problem is drawn with seed + j.
    /// At most 2^62 (servers keep seeds as signed 64-bit integers).
    #[arg(long, default_value_t = 1234, value_parser = crate::flags::seed_parser())]
    pub seed: u64,
    /// Prompt form: chat messages (instruct models) or plain text (base models).
    #[arg(long, value_enum, default_value_t = Style::Chat)]
    pub style: Style,
    /// Prompt template (default: each task's own).
    #[arg(long)]
    pub template: Option<String>,
    /// Self-improvement round recorded in the samples.
    #[arg(long, default_value_t = 0)]
    pub round: u32,
    /// Run directory; running again with the same directory continues where it stopped
    /// (default: runs/bench-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip SentenceBERT diversity in the reports (no encoder fetch, no embedding time).
    #[arg(long)]
    pub no_semantic: bool,
    /// Bootstrap resamples of the reports' 95% intervals over problems (0: none); seeded
    /// with --seed and recorded in the manifest.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: u32,
    #[command(flatten)]
    pub llamacpp: LlamaCppArgs,
    #[command(flatten)]
    pub openai: OpenAiArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrainMethod {
    /// Supervised fine-tuning on `{"prompt","completion"}` or `{"messages"}` records.
    Sft,
    /// Direct preference optimisation on `{"prompt","chosen","rejected"}` records.
    Dpo,
}

/// Flags of `harness train`: what to train on and where to write; how to train is
/// [`TrainingArgs`], shared with `harness run`.
#[derive(Debug, Args)]
#[command(
    mut_arg("train_batch_size", |a| a.long("batch-size").value_name("BATCH_SIZE")),
    mut_arg("train_seed", |a| a.long("seed").value_name("SEED")),
    mut_arg("train_threads", |a| a.long("threads").value_name("THREADS")),
)]
pub struct TrainArgs {
    /// Training objective: sft or dpo.
    #[arg(long, value_enum)]
    pub method: TrainMethod,
    /// Training data, JSON Lines in TRL's formats (see the README).
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Held-out records in the same format: their loss (SFT) or DPO rewards and margin are
    /// measured before and after training and written to train_summary.json.
    #[arg(long, value_name = "FILE.jsonl")]
    pub eval_data: Option<PathBuf>,
    /// Model to train: a .gguf (quantised tensors are dequantised) or a Hugging Face folder
    /// (config.json + *.safetensors). Default: SmolLM2-135M-Instruct, fetched on first use.
    #[arg(long, value_name = "BASE")]
    pub model: Option<PathBuf>,
    /// DPO reference model (default: the model being trained, M_{t-1}; give M1 or M0 to
    /// anchor to an earlier round).
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<PathBuf>,
    /// The tokenizer and chat template that encode the data: a GGUF (as llama.cpp applies
    /// them) or a Hugging Face folder (tokenizer.json and its jinja chat template, as
    /// transformers and vLLM apply them). Default: --model.
    #[arg(long, value_name = "GGUF|DIR")]
    pub tokenizer: Option<PathBuf>,
    /// LoRA: start the adapters from this PEFT adapter folder (a previous round's
    /// `adapter/`) or llama.cpp adapter GGUF (its `adapter.gguf`, over a GGUF --model)
    /// instead of a fresh initialisation; --model stays the frozen base. DPO's reference is
    /// then base + this adapter unless --ref is given.
    #[arg(long, value_name = "DIR|ADAPTER.gguf", conflicts_with = "full")]
    pub continue_adapter: Option<PathBuf>,
    /// Also measure the model on all the training data: SFT's mean loss before and after
    /// training, DPO's rewards and margin after it (one forward pass over the data each
    /// time; the loop leaves it off).
    #[arg(long, alias = "loss-on-training-data")]
    pub training_data_stats: bool,
    /// Output folder (model.gguf, adapter.gguf, adapter/, hf/, train_log.jsonl,
    /// train_summary.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Tensor type of the exported model.gguf (needs a GGUF base); none skips it.
    #[arg(long, value_enum, default_value_t = ExportType::F16)]
    pub gguf_type: ExportType,
    /// Also write merged Hugging Face safetensors to OUT/hf.
    #[arg(long)]
    pub export_hf: bool,
}
