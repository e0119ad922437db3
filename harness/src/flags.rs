//! Flag groups that several subcommands flatten in (`#[command(flatten)]`): where data
//! comes from, the MBPP sandbox's limits, the inference engine and its settings.

use std::path::PathBuf;
use std::time::Duration;

use benchmarks::{DataSource, SandboxConfig};
use clap::{Args, ValueEnum};

/// The largest base seed `--seed` takes: servers keep a request's seed as a signed 64-bit
/// integer (vLLM refuses a larger one), and the seeds derived from the base (`+ j` per
/// sample, `+ 1000000 t` per round) must fit too, so the base stays at or below 2^62.
pub const MAX_SEED: u64 = 1 << 62;

/// Parses `--seed`, refusing one above [`MAX_SEED`] before anything runs.
pub fn seed_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(..=MAX_SEED)
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

impl DataArgs {
    /// The data source these flags select.
    pub fn source(&self) -> DataSource {
        match &self.data_dir {
            Some(dir) => DataSource::Dir(dir.clone()),
            None => DataSource::Embedded,
        }
    }
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

impl SandboxArgs {
    /// The sandbox's configuration from these flags.
    pub fn config(&self) -> SandboxConfig {
        let mut config = SandboxConfig {
            timeout: Duration::from_secs_f64(self.sandbox_timeout),
            memory_bytes: self.sandbox_memory_mb << 20,
            python: self.python.clone(),
            ..SandboxConfig::default()
        };
        if let Some(parallel) = self.sandbox_parallel {
            config.parallel = parallel.max(1);
        }
        config
    }
}

/// Settings of the embedded llama.cpp engine.
#[derive(Debug, Args, Clone)]
pub struct LlamaCppArgs {
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Sequences decoded together, or `auto`: one per sample of each sampling call (greedy
    /// and sampled responses of every problem at once), at most 256 (255 under flash
    /// attention, which keeps a sequence id for itself) and at most what a 2 GiB KV cache
    /// holds: the fastest setting measured (README, "Sampling speed"). Output is the same at
    /// any setting.
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
    /// Attention kernel: `on`, llama.cpp's flash attention, skips the cache cells a sequence
    /// does not hold (4-6% faster on the loop's sampling call, README); `off`, plain attention,
    /// is what to compare with a llama-server run with `-fa off`; `auto` lets llama.cpp choose
    /// (handled as `on`). Either way greedy output is the same whatever else is in the batch:
    /// under flash attention the engine keeps llama.cpp's CPU kernel on its per-row algorithm.
    #[arg(long, value_enum, default_value_t = FlashAttn::On)]
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// `harness SUBCOMMAND --seed SEED` parsed by the real command line.
    fn parse_seed(subcommand: &str, seed: &str) -> Result<(), String> {
        crate::cli::Cli::try_parse_from(["harness", subcommand, "--seed", seed])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn seeds_above_2_to_the_62_are_refused_before_a_run() {
        for subcommand in ["bench", "run"] {
            assert!(parse_seed(subcommand, &super::MAX_SEED.to_string()).is_ok());
            let err = parse_seed(subcommand, &(super::MAX_SEED + 1).to_string()).unwrap_err();
            assert!(err.contains("--seed"), "{err}");
            let err = parse_seed(subcommand, &u64::MAX.to_string()).unwrap_err();
            assert!(err.contains("4611686018427387904"), "{err}");
        }
    }
}
