//! Differentiable building blocks. candle 0.11's fused `rms_norm`, `softmax_last_dim`, `rope*`
//! and `sdpa` have no backward pass (the gradient is silently cut), so the model is written
//! with ops that all have one; `tests/gradcheck.rs` compares every parameter's gradient with
//! finite differences to keep it that way.

use candle_core::{D, DType, Device, Result, Tensor};

use crate::config::RopeScaling;

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * weight` over the last dimension.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if crate::fused::applies(x) {
        return crate::fused::rms_norm(x, weight, eps);
    }
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (mean_square + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(weight)
}

/// The feed-forward gate `silu(gate) * up`.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if crate::fused::applies(gate) {
        return crate::fused::swiglu(gate, up);
    }
    gate.silu()? * up
}

/// Softmax over the last dimension, `exp(x - max) / sum(exp(x - max))`. The max is a constant
/// shift (softmax does not depend on it), so it is detached.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}

/// `log_softmax` over the last dimension.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&log_sum)
}

/// Rotary tables `cos`, `sin` of shape `[positions, head_dim / 2]`, the frequencies
/// `theta^(-2i/d)` changed by `scaling`.
pub fn rotary_tables(
    head_dim: usize,
    theta: f64,
    scaling: Option<&RopeScaling>,
    positions: usize,
    dtype: DType,
    device: &Device,
) -> anyhow::Result<(Tensor, Tensor)> {
    let mut inv_freq: Vec<f64> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
        .collect();
    if let Some(scaling) = scaling {
        scaling.apply(&mut inv_freq)?;
    }
    let mut angles = Vec::with_capacity(positions * inv_freq.len());
    for p in 0..positions {
        angles.extend(inv_freq.iter().map(|f| p as f64 * f));
    }
    let angles = Tensor::from_vec(angles, (positions, head_dim / 2), device)?;
    Ok((
        angles.cos()?.to_dtype(dtype)?,
        angles.sin()?.to_dtype(dtype)?,
    ))
}

/// Rotary embedding in the Hugging Face "halves" layout: dimension `i` pairs with `i + d/2`.
/// `x` is `[batch, heads, seq, head_dim]`, `cos`/`sin` `[seq, head_dim / 2]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let first = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let second = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[first, second], D::Minus1)
}

/// Repeats each key/value head `groups` times (grouped-query attention):
/// `[b, kv_heads, t, d]` to `[b, kv_heads * groups, t, d]`.
pub fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, groups, t, d))?
        .contiguous()?
        .reshape((b, kv * groups, t, d))
}

/// Softmax of attention scores `[b, h, t, t]` under a causal mask (row `i` sees `j <= i`).
pub fn causal_softmax(scores: &Tensor) -> Result<Tensor> {
    let (.., t) = scores.dims4()?;
    let mask = causal_mask(t, scores.dtype(), scores.device())?;
    softmax_last(&scores.broadcast_add(&mask)?)
}

/// `log_softmax(logits)[i, targets[i]]` for logits `[n, vocab]`.
/// (The model uses `fused::output_logprobs` instead where the fused kernels apply.)
pub fn target_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    log_softmax_last(logits)?
        .gather(&targets.unsqueeze(1)?, D::Minus1)?
        .squeeze(1)
}

/// Additive causal mask `[t, t]`: 0 on and below the diagonal, -inf above.
pub fn causal_mask(t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)?.to_dtype(dtype)
}

/// `log(sigmoid(x))`, computed stably as `-(relu(-x) + log(1 + exp(-|x|)))`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let softplus_neg = (x.neg()?.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    softplus_neg.neg()
}
