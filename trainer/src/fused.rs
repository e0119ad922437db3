//! Fused CPU kernels with their backward passes, for the three places where composed candle
//! ops spent most of a training step outside matrix products: the output log-softmax over
//! the vocabulary (`[tokens, 49152]` for SmolLM2: six passes and several 200 MB temporaries
//! composed, two passes fused), the attention softmax with its causal mask, and RMSNorm.
//! Each is one parallel pass over rows forward and one backward. Other devices and dtypes
//! fall back to the composed ops in [`crate::ops`]. The gradient check covers both paths.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Storage, Tensor,
};
use std::sync::atomic::{AtomicBool, Ordering};

use num_traits::Float;
use rayon::prelude::*;

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the fused kernels off (or back on) process-wide: the gradient check runs both paths.
pub fn set_enabled(enabled: bool) {
    DISABLED.store(!enabled, Ordering::Relaxed);
}

/// Whether the fused CPU kernels apply to `t`.
pub fn applies(t: &Tensor) -> bool {
    !DISABLED.load(Ordering::Relaxed)
        && matches!(t.device(), Device::Cpu)
        && matches!(t.dtype(), DType::F32 | DType::F64)
}

fn slice<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("expected a contiguous tensor".into()))?;
    Ok(&data[start..end])
}

// ---------------------------------------------------------------------------------------
// log p(target) of each row

/// `log_softmax(logits)[i, targets[i]]` for logits `[n, vocab]`.
pub fn target_logprobs(logits: &Tensor, targets: Vec<u32>) -> Result<Tensor> {
    logits.contiguous()?.apply_op1(TargetLogprob { targets })
}

struct TargetLogprob {
    targets: Vec<u32>,
}

fn row_logsumexp<T: Float>(row: &[T]) -> T {
    let max = row.iter().copied().fold(T::neg_infinity(), T::max);
    let sum = row.iter().fold(T::zero(), |acc, &x| acc + (x - max).exp());
    max + sum.ln()
}

fn target_logprob_fwd<T: Float + Send + Sync>(
    logits: &[T],
    vocab: usize,
    targets: &[u32],
) -> Vec<T> {
    logits
        .par_chunks(vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| row[t as usize] - row_logsumexp(row))
        .collect()
}

fn target_logprob_bwd<T: Float + Send + Sync>(
    logits: &[T],
    vocab: usize,
    targets: &[u32],
    grad: &[T],
) -> Vec<T> {
    let mut out = vec![T::zero(); logits.len()];
    out.par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .zip(targets.par_iter().zip(grad.par_iter()))
        .for_each(|((out, row), (&t, &g))| {
            if g == T::zero() {
                return;
            }
            let lse = row_logsumexp(row);
            for (o, &x) in out.iter_mut().zip(row) {
                *o = -g * (x - lse).exp();
            }
            out[t as usize] = out[t as usize] + g;
        });
    out
}

impl CustomOp1 for TargetLogprob {
    fn name(&self) -> &'static str {
        "target-logprob"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, vocab) = layout.shape().dims2()?;
        if n != self.targets.len() || self.targets.iter().any(|&t| t as usize >= vocab) {
            candle_core::bail!("target-logprob: targets do not match the logits");
        }
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(target_logprob_fwd(slice(v, layout)?, vocab, &self.targets))
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(target_logprob_fwd(slice(v, layout)?, vocab, &self.targets))
            }
            _ => candle_core::bail!("target-logprob: f32 or f64 only"),
        };
        Ok((out, Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, vocab) = arg.dims2()?;
        let grad = grad_res.contiguous()?;
        let grad_storage = grad.storage_and_layout();
        let (xs, xl) = arg.storage_and_layout();
        let out = match (&*xs, &*grad_storage.0) {
            (Storage::Cpu(CpuStorage::F32(x)), Storage::Cpu(CpuStorage::F32(g))) => {
                let x = slice(x, xl)?;
                let g = slice(g, grad_storage.1)?;
                Tensor::from_vec(
                    target_logprob_bwd(x, vocab, &self.targets, g),
                    arg.shape(),
                    arg.device(),
                )?
            }
            (Storage::Cpu(CpuStorage::F64(x)), Storage::Cpu(CpuStorage::F64(g))) => {
                let x = slice(x, xl)?;
                let g = slice(g, grad_storage.1)?;
                Tensor::from_vec(
                    target_logprob_bwd(x, vocab, &self.targets, g),
                    arg.shape(),
                    arg.device(),
                )?
            }
            _ => candle_core::bail!("target-logprob backward: f32 or f64 CPU tensors only"),
        };
        Ok(Some(out))
    }
}

// ---------------------------------------------------------------------------------------
// causal softmax over attention scores `[..., t, t]`

/// Softmax over the last dimension of scores `[..., t, t]` with positions `j > i` of row `i`
/// masked out (probability 0).
pub fn causal_softmax(scores: &Tensor) -> Result<Tensor> {
    scores.contiguous()?.apply_op1(CausalSoftmax)
}

struct CausalSoftmax;

fn causal_softmax_fwd<T: Float + Send + Sync>(x: &[T], t: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(t)
        .zip(x.par_chunks(t))
        .enumerate()
        .for_each(|(r, (out, row))| {
            let keep = r % t + 1;
            let max = row[..keep].iter().copied().fold(T::neg_infinity(), T::max);
            let mut sum = T::zero();
            for (o, &v) in out[..keep].iter_mut().zip(&row[..keep]) {
                *o = (v - max).exp();
                sum = sum + *o;
            }
            let inv = sum.recip();
            for o in &mut out[..keep] {
                *o = *o * inv;
            }
        });
    out
}

fn softmax_bwd<T: Float + Send + Sync>(y: &[T], g: &[T], t: usize) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(t)
        .zip(y.par_chunks(t).zip(g.par_chunks(t)))
        .for_each(|(out, (y, g))| {
            let dot = y.iter().zip(g).fold(T::zero(), |acc, (&a, &b)| acc + a * b);
            for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
                *o = y * (g - dot);
            }
        });
    out
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        let t = dims[dims.len() - 1];
        if dims.len() < 2 || dims[dims.len() - 2] != t {
            candle_core::bail!("causal-softmax: expected square [..., t, t] scores");
        }
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(causal_softmax_fwd(slice(v, layout)?, t)),
            CpuStorage::F64(v) => CpuStorage::F64(causal_softmax_fwd(slice(v, layout)?, t)),
            _ => candle_core::bail!("causal-softmax: f32 or f64 only"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let t = res.dim(candle_core::D::Minus1)?;
        let grad = grad_res.contiguous()?;
        let (ys, yl) = res.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let out = match (&*ys, &*gs) {
            (Storage::Cpu(CpuStorage::F32(y)), Storage::Cpu(CpuStorage::F32(g))) => {
                Tensor::from_vec(
                    softmax_bwd(slice(y, yl)?, slice(g, gl)?, t),
                    res.shape(),
                    res.device(),
                )?
            }
            (Storage::Cpu(CpuStorage::F64(y)), Storage::Cpu(CpuStorage::F64(g))) => {
                Tensor::from_vec(
                    softmax_bwd(slice(y, yl)?, slice(g, gl)?, t),
                    res.shape(),
                    res.device(),
                )?
            }
            _ => candle_core::bail!("causal-softmax backward: f32 or f64 CPU tensors only"),
        };
        Ok(Some(out))
    }
}

// ---------------------------------------------------------------------------------------
// RMSNorm

/// `x / sqrt(mean(x^2) + eps) * weight` over the last dimension.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps })
}

struct RmsNorm {
    eps: f64,
}

fn inv_rms<T: Float>(row: &[T], eps: f64) -> T {
    let h = T::from(row.len()).unwrap_or_else(T::one);
    let ms = row.iter().fold(T::zero(), |acc, &v| acc + v * v) / h;
    (ms + T::from(eps).unwrap_or_else(T::zero)).sqrt().recip()
}

fn rms_norm_fwd<T: Float + Send + Sync>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let h = w.len();
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(h)
        .zip(x.par_chunks(h))
        .for_each(|(out, row)| {
            let r = inv_rms(row, eps);
            for ((o, &v), &w) in out.iter_mut().zip(row).zip(w) {
                *o = v * r * w;
            }
        });
    out
}

/// `dx = r (g w) - x r^3 / h * sum(g w x)`, `dw = sum_rows(g x r)`.
fn rms_norm_bwd<T: Float + Send + Sync>(x: &[T], w: &[T], g: &[T], eps: f64) -> (Vec<T>, Vec<T>) {
    let h = w.len();
    let hf = T::from(h).unwrap_or_else(T::one);
    let mut dx = vec![T::zero(); x.len()];
    let dw = dx
        .par_chunks_mut(h)
        .zip(x.par_chunks(h).zip(g.par_chunks(h)))
        .fold(
            || vec![T::zero(); h],
            |mut dw, (dx, (row, g))| {
                let r = inv_rms(row, eps);
                let dot = row
                    .iter()
                    .zip(g)
                    .zip(w)
                    .fold(T::zero(), |acc, ((&x, &g), &w)| acc + g * w * x);
                let c = dot * r * r * r / hf;
                for i in 0..h {
                    dx[i] = r * g[i] * w[i] - row[i] * c;
                    dw[i] = dw[i] + g[i] * row[i] * r;
                }
                dw
            },
        )
        .reduce(
            || vec![T::zero(); h],
            |mut a, b| {
                for (a, b) in a.iter_mut().zip(b) {
                    *a = *a + b;
                }
                a
            },
        );
    (dx, dw)
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = l2.shape().elem_count();
        if l1.shape().dims().last() != Some(&h) {
            candle_core::bail!("rms-norm: weight does not match the last dimension");
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => {
                CpuStorage::F32(rms_norm_fwd(slice(x, l1)?, slice(w, l2)?, self.eps))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                CpuStorage::F64(rms_norm_fwd(slice(x, l1)?, slice(w, l2)?, self.eps))
            }
            _ => candle_core::bail!("rms-norm: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (dx, dw) = match (&*xs, &*ws, &*gs) {
            (
                Storage::Cpu(CpuStorage::F32(xv)),
                Storage::Cpu(CpuStorage::F32(wv)),
                Storage::Cpu(CpuStorage::F32(gv)),
            ) => {
                let (dx, dw) =
                    rms_norm_bwd(slice(xv, xl)?, slice(wv, wl)?, slice(gv, gl)?, self.eps);
                (
                    Tensor::from_vec(dx, x.shape(), x.device())?,
                    Tensor::from_vec(dw, w.shape(), w.device())?,
                )
            }
            (
                Storage::Cpu(CpuStorage::F64(xv)),
                Storage::Cpu(CpuStorage::F64(wv)),
                Storage::Cpu(CpuStorage::F64(gv)),
            ) => {
                let (dx, dw) =
                    rms_norm_bwd(slice(xv, xl)?, slice(wv, wl)?, slice(gv, gl)?, self.eps);
                (
                    Tensor::from_vec(dx, x.shape(), x.device())?,
                    Tensor::from_vec(dw, w.shape(), w.device())?,
                )
            }
            _ => candle_core::bail!("rms-norm backward: f32 or f64 CPU tensors only"),
        };
        Ok((Some(dx), Some(dw)))
    }
}

// ---------------------------------------------------------------------------------------
// Linear projection whose backward skips frozen weights

/// `x W^T` for `x` `[n, in]` and `W` `[out, in]`. candle's own matmul backward computes the
/// gradient of both operands even when one is a frozen weight (a LoRA base, a tied output
/// embedding): for LoRA that doubled the backward pass and allocated a gradient as large as
/// the model. This op computes `W`'s gradient only when `W` is being trained.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Linear)
}

struct Linear;

/// `dst[m, n] = lhs[m, k] * rhs^T` with `rhs` `[n, k]`, all row-major and contiguous.
fn gemm_nt<T: 'static + Float>(lhs: &[T], rhs: &[T], m: usize, n: usize, k: usize) -> Vec<T> {
    let mut dst = vec![T::zero(); m * n];
    if m == 0 || n == 0 {
        return dst;
    }
    // SAFETY: the slices hold m*k, n*k and m*n elements, matching the sizes and strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
    dst
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = l1.shape().dims2()?;
        let (out, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("linear: input width {k} does not match the weight's {k2}");
        }
        let y = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => {
                CpuStorage::F32(gemm_nt(slice(x, l1)?, slice(w, l2)?, n, out, k))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                CpuStorage::F64(gemm_nt(slice(x, l1)?, slice(w, l2)?, n, out, k))
            }
            _ => candle_core::bail!("linear: f32 or f64 only"),
        };
        Ok((y, Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.detach();
        let dx = if x.track_op() {
            Some(g.matmul(&w.detach())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(g.t()?.matmul(&x.detach())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}
