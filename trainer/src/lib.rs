//! The candle trainer: a differentiable Llama-family model, LoRA and full fine-tuning, SFT
//! and DPO losses, and checkpoint export for the next round's backend. (Filled by the
//! trainer issue; this crate is the place it lands.)
//!
//! The trainer never samples and never grades: it receives training data and writes models.
