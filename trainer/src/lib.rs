//! The candle trainer: a differentiable Llama-family model, LoRA and full fine-tuning, SFT
//! and DPO losses, and checkpoint export for the next round's backend (GGUF for llama.cpp,
//! PEFT adapters and merged safetensors for vLLM).
//!
//! The trainer never samples and never grades: it receives training data and writes models.

pub mod batch;
pub mod chat_template;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod fused;
pub mod job;
pub mod lora;
pub mod model;
pub mod ops;
pub mod optim;
pub mod process;
pub mod text;
pub mod train;

pub use checkpoint::Weights;
pub use config::{LlamaConfig, RopeScaling};
pub use lora::LoraConfig;
pub use model::{Llama, Tuning};
