//! Flags of `harness train`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrainMethod {
    /// Supervised fine-tuning on `{"prompt","completion"}` or `{"messages"}` records.
    Sft,
    /// Direct preference optimisation on `{"prompt","chosen","rejected"}` records.
    Dpo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportType {
    F32,
    F16,
    #[value(name = "q8_0")]
    #[serde(rename = "q8_0")]
    Q8_0,
    /// No GGUF export.
    None,
}

impl ExportType {
    /// The trainer's GGUF type (`None`: no GGUF export).
    pub fn gguf_type(self) -> Option<trainer::checkpoint::GgufType> {
        use trainer::checkpoint::GgufType;
        match self {
            ExportType::F32 => Some(GgufType::F32),
            ExportType::F16 => Some(GgufType::F16),
            ExportType::Q8_0 => Some(GgufType::Q8_0),
            ExportType::None => None,
        }
    }
}

/// The peak learning rate when none is given: TRL-style defaults per objective and tuning.
pub fn default_learning_rate(dpo: bool, lora: bool) -> f64 {
    match (dpo, lora) {
        (false, false) => 1e-5,
        (false, true) => 2e-4,
        (true, false) => 5e-7,
        (true, true) => 5e-6,
    }
}

#[derive(Debug, Args)]
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
    /// `adapter/`) instead of a fresh initialisation; --model stays the frozen base. DPO's
    /// reference is then base + this adapter unless --ref is given.
    #[arg(long, value_name = "DIR", conflicts_with = "full")]
    pub continue_adapter: Option<PathBuf>,
    /// SFT: also measure the mean loss over all the training data before and after training
    /// (one forward pass over the data each time).
    #[arg(long)]
    pub loss_on_training_data: bool,
    /// Output folder (model.gguf, adapter/, hf/, train_log.jsonl, train_summary.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Train every weight instead of LoRA adapters.
    #[arg(long, conflicts_with = "lora_rank")]
    pub full: bool,
    /// LoRA rank r (the width of the low-rank update).
    #[arg(long, default_value_t = 16)]
    pub lora_rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    pub lora_alpha: f64,
    /// LoRA dropout on the adapters' input.
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f64,
    /// Projections that get adapters, comma-separated (q_proj, k_proj, v_proj, o_proj,
    /// gate_proj, up_proj, down_proj) or all-linear.
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    pub lora_targets: Vec<String>,
    /// Peak learning rate (default: 1e-5 full, 2e-4 LoRA; DPO: 5e-7 full, 5e-6 LoRA).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Passes over the data.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Sequences (SFT) or pairs (DPO) per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Share of optimizer steps spent in linear warmup.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Learning-rate schedule after warmup: cosine (to 0) or constant.
    #[arg(long, default_value = "cosine")]
    pub schedule: trainer::optim::Schedule,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// AdamW weight decay (decoupled).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seed of the data order and of LoRA's initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Longest prompt + response in tokens; longer responses are cut, and examples whose
    /// prompt alone does not fit are skipped (counted in train_summary.json).
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// DPO: beta, the strength of the pull towards the reference.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// DPO: label smoothing (conservative DPO), the assumed share of flipped preferences.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// DPO: weight of the chosen responses' NLL added to the loss (TRL's rpo_alpha).
    #[arg(long, default_value_t = 0.0)]
    pub nll_weight: f64,
    /// Tensor type of the exported model.gguf (needs a GGUF base); none skips it.
    #[arg(long, value_enum, default_value_t = ExportType::F16)]
    pub gguf_type: ExportType,
    /// Also write merged Hugging Face safetensors to OUT/hf.
    #[arg(long)]
    pub export_hf: bool,
    /// Worker threads for the CPU (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}
