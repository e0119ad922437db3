//! Flags of `harness run`, the loop's settings. Every flag can also be set in a TOML file
//! (`--config`), by its long name (`train-limit = 300` or `train_limit = 300`); flags on the
//! command line win.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::flags::{BackendKind, DataArgs, LlamaCppArgs, OpenAiArgs, SandboxArgs, Style};
use crate::training::{ExportType, TrainingArgs};

/// The post-training method F of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoopMethod {
    /// SFT on the correct responses every round.
    Sft,
    /// DPO on (correct, incorrect) pairs every round.
    Dpo,
    /// DPO at round 2, then SFT, DPO, ... alternating.
    SftDpo,
}

impl LoopMethod {
    /// The folder and report name.
    pub fn name(self) -> &'static str {
        match self {
            LoopMethod::Sft => "sft",
            LoopMethod::Dpo => "dpo",
            LoopMethod::SftDpo => "sft-dpo",
        }
    }

    /// Whether M_round is trained with DPO (else SFT). Round 1 is always SFT on gold.
    pub fn dpo_at(self, round: u32) -> bool {
        match self {
            LoopMethod::Sft => false,
            LoopMethod::Dpo => round >= 2,
            LoopMethod::SftDpo => round >= 2 && round.is_multiple_of(2),
        }
    }

    /// Whether `self` and `other` train the same M_round: the same objective at every round
    /// from 2 to `round` (from the same M1, on data sets built from the same samples with
    /// the same seeds). DPO and SFT-DPO share round 2.
    pub fn same_model_as(self, other: LoopMethod, round: u32) -> bool {
        (2..=round).all(|r| self.dpo_at(r) == other.dpo_at(r))
    }
}

/// DPO's reference model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DpoReference {
    /// The model being trained, M_{t-1} (for LoRA: M0 + A_{t-1}).
    Previous,
    /// The round-1 model.
    M1,
    /// The base model.
    M0,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML file of settings (keys are the long flag names); flags given here win.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Check what the run needs without running it: the settings, the data, M0 (and M1),
    /// the server (up and serving M0, for --lora-hotload), the trainer command (syntax,
    /// program, scripts), and print each round's samples and most new tokens. Exits
    /// non-zero when a check fails; loads no model and writes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Task to self-improve on: gsm8k, math, csqa, mbpp or arith.
    #[arg(long, default_value = "arith")]
    pub task: String,
    /// Post-training methods, comma-separated (sft, dpo, sft-dpo); they share M1 and its
    /// round-1 evaluation and training samples, computed once.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sft,dpo,sft-dpo"
    )]
    pub method: Vec<LoopMethod>,
    /// Rounds T: M1 (SFT on gold) is round 1; rounds 2..T train on the model's own samples.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Inference engine.
    #[arg(long, value_enum, default_value_t = BackendKind::Llamacpp)]
    pub backend: BackendKind,
    /// The base model M0: a GGUF for llamacpp (default: SmolLM2-135M-Instruct Q4_1, fetched
    /// on first use).
    #[arg(long)]
    pub model: Option<String>,
    /// Reuse this M1 instead of training it: a folder written by `harness train` (LoRA runs:
    /// adapter.gguf and adapter/; --full: model.gguf).
    #[arg(long, value_name = "DIR")]
    pub m1: Option<PathBuf>,
    /// Also evaluate M0, as round 0.
    #[arg(long)]
    pub eval_base: bool,
    /// Training questions (gold pairs for M1, questions sampled every round), evenly spaced
    /// through the training split so every level is covered (0: all).
    #[arg(long, default_value_t = 100)]
    pub train_limit: usize,
    /// Gold pairs M1 is trained on, evenly spaced through the training split (0: all;
    /// default: --train-limit). A larger gold set gives a stronger M1 while each round
    /// samples only --train-limit questions.
    #[arg(long)]
    pub gold_limit: Option<usize>,
    /// Evaluation problems, evenly spaced through the evaluation split (0: all).
    #[arg(long, default_value_t = 20)]
    pub eval_limit: usize,
    /// Problems of each out-of-distribution set (0: all).
    #[arg(long, default_value_t = 10)]
    pub ood_limit: usize,
    /// Out-of-distribution sets as task:split (or a task's evaluation split by its name
    /// alone), comma-separated; `none` for none. Default: gsm8k -> svamp, math:math500;
    /// arith -> arith:ood; others none.
    #[arg(long, value_delimiter = ',')]
    pub ood: Vec<String>,
    /// Samples per training question each round (the study: 50).
    #[arg(long, default_value_t = 4)]
    pub n_train: u32,
    /// Samples per evaluation problem besides the greedy response (pass@k, diversity).
    #[arg(long, default_value_t = 4)]
    pub n_eval: u32,
    /// Sampling temperature (the study: 0.75).
    #[arg(long, default_value_t = 0.75)]
    pub temperature: f32,
    /// Nucleus sampling threshold (the study: 0.95).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Top-k sampling (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Min-p sampling (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Largest number of new tokens per response (default: each task's, see `harness
    /// tasks`: well above its gold solutions' length, since a response cut there enters no
    /// training set).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Base seed. Evaluation: greedy with `seed`, sample j with `seed + j` every round.
    /// Training questions of round t: sample j with `seed + 1000000 t + j`.
    /// At most 2^62 (servers keep seeds as signed 64-bit integers).
    #[arg(long, default_value_t = 1234, value_parser = crate::flags::seed_parser())]
    pub seed: u64,
    /// Prompt form: chat messages (instruct models) or plain text (base models).
    #[arg(long, value_enum, default_value_t = Style::Chat)]
    pub style: Style,
    /// Largest number of DPO pairs per question.
    #[arg(long, default_value_t = 5)]
    pub max_pairs: usize,
    /// DPO's reference model.
    #[arg(long, value_enum, default_value_t = DpoReference::Previous)]
    pub dpo_ref: DpoReference,
    /// Run directory; the same command with the same directory continues a stopped run
    /// (default: runs/run-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip SentenceBERT diversity (no encoder fetch, no embedding time).
    #[arg(long)]
    pub no_semantic: bool,
    /// Bootstrap resamples of the reports' 95% intervals and paired changes (0: none);
    /// seeded with --seed and recorded in the manifest.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: u32,
    /// Release the sampling engine's model before training and load the next one after
    /// (less memory held at once; GPU memory).
    #[arg(long)]
    pub low_memory: bool,
    #[command(flatten)]
    pub training: LoopTrainArgs,
    #[command(flatten)]
    pub serving: ServeArgs,
    #[command(flatten)]
    pub llamacpp: LlamaCppArgs,
    #[command(flatten)]
    pub openai: OpenAiArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

/// How a server (`--backend openai`) is switched to each round's model.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// vLLM: load each round's LoRA adapter at run time (`/v1/load_lora_adapter`, named
    /// `<run>-<checkpoint>`), sample with it, unload the previous one. vLLM must run with
    /// VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora.
    #[arg(long)]
    pub lora_hotload: bool,
    /// With --lora-hotload and a vLLM on another machine: LOCAL=REMOTE, where the server
    /// sees this machine's folder LOCAL (a shared file system mounted elsewhere); adapter
    /// paths under LOCAL are sent with REMOTE in its place. Without it the server must see
    /// the run directory at the same absolute path.
    #[arg(long, value_name = "LOCAL=REMOTE", value_parser = parse_path_map)]
    pub adapter_path_map: Option<(PathBuf, String)>,
    /// Any server: a shell command that (re)starts the server on the round's checkpoint and
    /// returns; it gets HARNESS_ROUND, HARNESS_CHECKPOINT, HARNESS_SERVED_MODEL (the model
    /// name to serve under), HARNESS_GGUF, HARNESS_ADAPTER, HARNESS_HF and HARNESS_BASE_MODEL;
    /// its output goes to <run>/serve-hook.log.
    #[arg(long, value_name = "CMD")]
    pub serve_hook: Option<String>,
    /// Seconds to wait for the hook and then for the server to be healthy and list the
    /// model.
    #[arg(long, default_value_t = 600.0)]
    pub serve_timeout: f64,
    /// The name the server serves M0 under (default: --model as given).
    #[arg(long, value_name = "NAME")]
    pub served_model: Option<String>,
}

/// `LOCAL=REMOTE` of --adapter-path-map; LOCAL made absolute.
fn parse_path_map(text: &str) -> Result<(PathBuf, String), String> {
    let (local, remote) = text
        .split_once('=')
        .filter(|(l, r)| !l.is_empty() && !r.is_empty())
        .ok_or_else(|| format!("`{text}`: expected LOCAL=REMOTE, two folders"))?;
    let local = std::path::absolute(local).map_err(|e| format!("`{local}`: {e}"))?;
    Ok((local, remote.trim_end_matches('/').to_string()))
}

/// Who trains each round's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TrainerKind {
    /// The built-in candle trainer.
    #[default]
    Candle,
    /// `--train-cmd`: your command (TRL, DeepSpeed, a cluster job) trains the round.
    External,
}

/// The trainer's settings in the loop: who trains, and the settings `harness train` shares,
/// with a learning rate and epochs of their own for DPO rounds and M1.
#[derive(Debug, Args, Clone)]
#[command(
    mut_arg("lr", |a| a.help("SFT peak learning rate (default: 2e-4 LoRA, 1e-5 full)")),
    mut_arg("epochs", |a| a.help("Passes over each round's data (rounds 2 and later)")),
)]
pub struct LoopTrainArgs {
    /// Who trains each round's model.
    #[arg(long, value_enum, default_value_t = TrainerKind::Candle)]
    pub trainer: TrainerKind,
    /// With --trainer external: a shell command that trains one round from the HARNESS_*
    /// environment variables (data set, method, start model and adapter, reference, output
    /// folder, every setting below; see the README) and leaves the checkpoint in
    /// $HARNESS_OUT; its output goes to the round's train.log.
    #[arg(long, value_name = "CMD")]
    pub train_cmd: Option<String>,
    #[command(flatten)]
    pub settings: TrainingArgs,
    /// DPO peak learning rate (default: 5e-6 LoRA, 5e-7 full).
    #[arg(long)]
    pub dpo_lr: Option<f64>,
    /// Passes over the gold pairs when training M1.
    #[arg(long, default_value_t = 3)]
    pub m1_epochs: usize,
    /// Tensor type of each round's model.gguf (default: f16 for LoRA, f32 for full
    /// fine-tuning, whose next round continues from it).
    #[arg(long, value_enum)]
    pub gguf_type: Option<ExportType>,
    /// Also write each LoRA round's merged model.gguf (--gguf-type). The embedded engine
    /// samples M0 with the round's adapter.gguf applied either way.
    #[arg(long)]
    pub export_merged: bool,
    /// Also write each LoRA round's PEFT adapter/ (for vLLM, PEFT, TRL) when the embedded
    /// engine samples the round; a server backend or --trainer external gets it either way.
    /// The next round continues the adapter the engine sampled (adapter.gguf) regardless.
    #[arg(long)]
    pub export_peft: bool,
}
