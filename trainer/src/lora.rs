//! Low-rank adapters (LoRA): `W x + (alpha / r) B A dropout(x)` with `A` `[r, in]` drawn from
//! a Kaiming-uniform distribution and `B` `[out, r]` zero, so that training starts from the
//! base model exactly (as PEFT initialises them).

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// LoRA settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Projection names to adapt (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj`, `down_proj`), or `all-linear`.
    pub target_modules: Vec<String>,
}

impl LoraConfig {
    /// Whether the projection `self_attn.q_proj` / `mlp.up_proj` is adapted.
    pub fn targets(&self, projection: &str) -> bool {
        let short = projection.rsplit('.').next().unwrap_or(projection);
        self.target_modules
            .iter()
            .any(|t| t == "all-linear" || t == short || t == projection)
    }
}

pub(crate) fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x4c6f_5241)
}

pub(crate) struct Lora {
    pub(crate) a: Var,
    pub(crate) b: Var,
    scale: f64,
    dropout: f64,
    /// Seeds the fused op's dropout draws: one new seed per training forward pass.
    dropout_draws: AtomicU64,
}

impl Lora {
    pub(crate) fn new(
        config: &LoraConfig,
        inp: usize,
        out: usize,
        rng: &mut ChaCha8Rng,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        // PEFT: kaiming_uniform_(a=sqrt(5)) gives bound = 1 / sqrt(in).
        let bound = 1.0 / (inp as f64).sqrt();
        let values: Vec<f64> = (0..config.rank * inp)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::from_vec(values, (config.rank, inp), device)?.to_dtype(dtype)?;
        let b = Tensor::zeros((out, config.rank), dtype, device)?;
        Ok(Lora {
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: config.alpha / config.rank as f64,
            dropout: config.dropout,
            dropout_draws: AtomicU64::new(rng.random()),
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = if train && self.dropout > 0.0 {
            candle_nn::ops::dropout(x, self.dropout as f32)?
        } else {
            x.clone()
        };
        // Scaled at rank width (rows x r), not at the projection's output width: one pass
        // over a tensor out/r times smaller, forward and backward.
        let down = (crate::model::matmul_t(&x, self.a.as_tensor())? * self.scale)?;
        crate::model::matmul_t(&down, self.b.as_tensor())
    }

    /// `x W^T` plus the adapter's output, in one fused op, for `x` `[..., in]` on the CPU.
    pub(crate) fn fused_with_base(&self, x: &Tensor, w: &Tensor, train: bool) -> Result<Tensor> {
        let dropout = if train { self.dropout } else { 0.0 };
        let seed = self.dropout_draws.fetch_add(1, Ordering::Relaxed);
        crate::fused::lora_linear(
            x,
            w,
            self.a.as_tensor(),
            self.b.as_tensor(),
            self.scale,
            (dropout, seed),
        )
    }

    /// `(alpha / r) B A`, the update folded into the base weight.
    pub(crate) fn delta(&self) -> Result<Tensor> {
        self.b.as_tensor().matmul(self.a.as_tensor())?.detach() * self.scale
    }

    /// `B` as PEFT stores it, unscaled (PEFT applies alpha / r itself).
    pub(crate) fn b_for_export(&self) -> Tensor {
        self.b.as_tensor().detach()
    }
}
