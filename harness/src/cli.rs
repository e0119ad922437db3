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
    /// One evaluation round: greedy pass@1 plus N samples per problem (pass@k), graded,
    /// written to a run directory.
    Bench(Box<BenchArgs>),
    /// The self-improvement loop: M1 = SFT on gold pairs, then each round sample the
    /// training questions, grade, build the data set and train the next model (SFT, DPO or
    /// SFT-DPO), evaluating every model and reporting every reversal metric per round.
    /// Resumable: the same command continues a stopped run.
    Run(Box<crate::cmd::run_args::RunArgs>),
    /// Fine-tune a model on graded samples (SFT or DPO) and write the next round's
    /// checkpoint (GGUF for llama.cpp, PEFT adapter and safetensors for vLLM).
    Train(Box<crate::cmd::train_args::TrainArgs>),
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

/// Where task data comes from.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Read data files from this directory (laid out like benchmarks/data, plain or .gz)
    /// instead of the copies built into the binary. Checksums are verified either way.
    #[arg(long, env = "HARNESS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seed of generated tasks (arith); the same seed and generator version always give
    /// the same problems.
    #[arg(id = "arith_seed", long = "arith-seed", default_value_t = benchmarks::arith::DEFAULT_SEED)]
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

impl From<Style> for benchmarks::PromptStyle {
    fn from(style: Style) -> Self {
        match style {
            Style::Chat => benchmarks::PromptStyle::Chat,
            Style::Text => benchmarks::PromptStyle::Text,
        }
    }
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
    /// MBPP programs run at the same time (default: the number of CPUs).
    #[arg(long)]
    pub sandbox_parallel: Option<usize>,
    /// Wall-clock limit per MBPP program, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub sandbox_timeout: f64,
    /// Address-space limit per MBPP program, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub sandbox_memory_mb: u64,
    /// Python interpreter for the programs (a bare name is looked up in /usr/bin,
    /// /usr/local/bin, /bin, then PATH).
    #[arg(long, default_value = "python3", value_name = "PATH")]
    pub python: std::path::PathBuf,
}

/// Which inference engine samples the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Embedded llama.cpp (GGUF files; CPU, or GPU with the `cuda` feature).
    Llamacpp,
    /// An OpenAI-compatible server (vLLM, llama-server, ...).
    Openai,
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
    #[arg(long, default_value_t = 1234)]
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

/// Settings of the embedded llama.cpp engine.
#[derive(Debug, Args, Clone)]
pub struct LlamaCppArgs {
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Sequences decoded together, or `auto`: one per sample of each sampling call (greedy
    /// and sampled responses of every problem at once), at most 256 and at most what a 2 GiB
    /// KV cache holds: the fastest setting measured (README, "Sampling speed"). Output is the
    /// same at any setting.
    #[arg(long, default_value = "auto")]
    pub parallel: backends::Parallel,
    /// Context length of each sequence (prompt + response).
    #[arg(long, default_value_t = 2048)]
    pub ctx: u32,
    /// Tokens per llama_decode call.
    #[arg(long, default_value_t = 512)]
    pub batch_size: u32,
    /// Tokens per compute micro-batch.
    #[arg(long, default_value_t = 512)]
    pub ubatch_size: u32,
    /// Layers offloaded to the GPU (needs a build with `--features cuda`).
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
    /// Attention kernel. `off` keeps greedy output the same whatever else is in the batch
    /// (llama.cpp's flash attention changes its summation order with the batch's shape);
    /// `on` is faster on long contexts; `auto` lets llama.cpp choose.
    #[arg(long, value_enum, default_value_t = FlashAttn::Off)]
    pub flash_attn: FlashAttn,
}

/// `--flash-attn` values (llama-server's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlashAttn {
    Off,
    On,
    Auto,
}

impl From<FlashAttn> for backends::FlashAttention {
    fn from(value: FlashAttn) -> Self {
        match value {
            FlashAttn::Off => backends::FlashAttention::Off,
            FlashAttn::On => backends::FlashAttention::On,
            FlashAttn::Auto => backends::FlashAttention::Auto,
        }
    }
}

/// Settings of the OpenAI-compatible client.
#[derive(Debug, Args, Clone)]
pub struct OpenAiArgs {
    /// Server base URL ending in /v1; repeat (or comma-separate) to spread load.
    #[arg(long, value_delimiter = ',')]
    pub base_url: Vec<String>,
    /// API key (default: the OPENAI_API_KEY environment variable).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Limit per HTTP request, in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub request_timeout: f64,
    /// Retry a request whose server sends nothing for this many seconds (responses are
    /// streamed, so a live request sends a token at a time; a hung one costs this long).
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Retries per request on connection errors, 429 and 5xx.
    #[arg(long, default_value_t = 6)]
    pub retries: u32,
    /// Ask for a problem's samples in one request with `n` (vLLM seeds choice j with
    /// seed + j); by default one request per sample, each with its own seed.
    #[arg(long)]
    pub native_n: bool,
}
