//! Fused CPU kernels with their backward passes, where composed candle ops spent most of a
//! training step outside matrix products: the output projection with each row's target
//! log-probability (the `[tokens, 49152]` logits of SmolLM2 never become a graph node), the
//! attention softmax with its causal mask, RMSNorm, the rotary embedding, a projection
//! whose backward skips frozen weights, and the SwiGLU gate ([`swiglu`]). Each is one parallel pass over rows forward and one
//! backward. Other devices and dtypes fall back to the composed ops in [`crate::ops`]. The
//! gradient check covers both paths.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Storage, Tensor,
    WithDType,
};
use std::sync::atomic::{AtomicBool, Ordering};

use num_traits::Float;
use rayon::prelude::*;

use matmul::{Threads, View, product};

mod attention;
mod lora;
mod matmul;
mod swiglu;
pub use attention::{Heads, RopeTables, attention};
pub use lora::lora_linear;
pub use swiglu::swiglu;

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

/// A backward kernel's two gradients as tensors shaped like its two inputs.
fn shaped_like<T: WithDType>(
    (da, db): (Vec<T>, Vec<T>),
    a: &Tensor,
    b: &Tensor,
) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::from_vec(da, a.shape(), a.device())?,
        Tensor::from_vec(db, b.shape(), b.device())?,
    ))
}

// ---------------------------------------------------------------------------------------
// log p(target) of each row, shared by the output projection below

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
            ) => shaped_like(
                rms_norm_bwd(slice(xv, xl)?, slice(wv, wl)?, slice(gv, gl)?, self.eps),
                x,
                w,
            )?,
            (
                Storage::Cpu(CpuStorage::F64(xv)),
                Storage::Cpu(CpuStorage::F64(wv)),
                Storage::Cpu(CpuStorage::F64(gv)),
            ) => shaped_like(
                rms_norm_bwd(slice(xv, xl)?, slice(wv, wl)?, slice(gv, gl)?, self.eps),
                x,
                w,
            )?,
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
    product(
        View::rows(lhs, k),
        View::transposed(rhs, k),
        (m, n, k),
        Threads::All,
    )
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

// ---------------------------------------------------------------------------------------
// Rotary embedding (halves layout)

/// Rotary embedding of `x` `[b, h, t, d]` with tables `cos`/`sin` `[t, d/2]`: dimension `i`
/// pairs with `i + d/2`. One pass forward; the backward is the inverse rotation.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let to_f64 = |t: &Tensor| -> Result<Vec<f64>> {
        t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
    };
    x.contiguous()?.apply_op1(Rope {
        cos: to_f64(cos)?,
        sin: to_f64(sin)?,
        inverse: false,
    })
}

struct Rope {
    /// `[t, d/2]`, row-major.
    cos: Vec<f64>,
    sin: Vec<f64>,
    /// Rotate by minus the angle (the backward pass).
    inverse: bool,
}

fn rope_apply<T: Float + Send + Sync>(
    x: &[T],
    cos: &[f64],
    sin: &[f64],
    t: usize,
    d: usize,
    inverse: bool,
) -> Vec<T> {
    let half = d / 2;
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .enumerate()
        .for_each(|(r, (out, row))| {
            let pos = r % t;
            for i in 0..half {
                let c = T::from(cos[pos * half + i]).unwrap_or_else(T::zero);
                let mut s = T::from(sin[pos * half + i]).unwrap_or_else(T::zero);
                if inverse {
                    s = -s;
                }
                let (a, b) = (row[i], row[i + half]);
                out[i] = a * c - b * s;
                out[i + half] = b * c + a * s;
            }
        });
    out
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, _, t, d) = layout.shape().dims4()?;
        if self.cos.len() < t * d / 2 || d % 2 != 0 {
            candle_core::bail!("rope: tables do not cover {t} positions of dimension {d}");
        }
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(rope_apply(
                slice(v, layout)?,
                &self.cos,
                &self.sin,
                t,
                d,
                self.inverse,
            )),
            CpuStorage::F64(v) => CpuStorage::F64(rope_apply(
                slice(v, layout)?,
                &self.cos,
                &self.sin,
                t,
                d,
                self.inverse,
            )),
            _ => candle_core::bail!("rope: f32 or f64 only"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            inverse: !self.inverse,
        };
        Ok(Some(
            grad_res.detach().contiguous()?.apply_op1_no_bwd(&inverse)?,
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Output projection and log-probability of the target, fused

/// `log_softmax(hidden W^T)[i, targets[i]]` for `hidden` `[n, h]` and the output weight `W`
/// `[vocab, h]`, without the logits ever becoming a graph node: the forward keeps them, the
/// backward turns them in place into their gradient and multiplies it out. Composed, the
/// logits cost a 200 MB gradient, a 200 MB zero tensor to add it to, and a copy per step
/// for SmolLM2 at 1024 tokens.
pub fn output_logprobs(hidden: &Tensor, weight: &Tensor, targets: Vec<u32>) -> Result<Tensor> {
    hidden.contiguous()?.apply_op2(
        &weight.contiguous()?,
        OutputLogprob {
            targets,
            logits: std::sync::Mutex::new(None),
        },
    )
}

struct OutputLogprob {
    targets: Vec<u32>,
    /// The forward's logits `[n, vocab]`, taken by the backward.
    logits: std::sync::Mutex<Option<CpuStorage>>,
}

/// `dst[m, n] = lhs[m, k] * rhs[k, n]` (plain row-major product), or with `lhs` read
/// transposed: `lhs` stored `[k, m]`.
fn gemm_nn<T: 'static + Float>(
    lhs: &[T],
    rhs: &[T],
    m: usize,
    n: usize,
    k: usize,
    lhs_transposed: bool,
) -> Vec<T> {
    let lhs = if lhs_transposed {
        View::transposed(lhs, m)
    } else {
        View::rows(lhs, k)
    };
    product(lhs, View::rows(rhs, n), (m, n, k), Threads::All)
}

/// Forward: logits, then each row's log-probability of its target.
fn output_fwd<T: 'static + Float + Send + Sync>(
    h: &[T],
    w: &[T],
    n: usize,
    vocab: usize,
    hidden: usize,
    targets: &[u32],
) -> (Vec<T>, Vec<T>) {
    let logits = gemm_nt(h, w, n, vocab, hidden);
    let logp = target_logprob_fwd(&logits, vocab, targets);
    (logits, logp)
}

/// Backward: `dlogits = g (onehot - softmax)` in place, then `dh = dlogits W`,
/// `dW = dlogits^T h`.
#[allow(clippy::too_many_arguments)]
fn output_bwd<T: 'static + Float + Send + Sync>(
    mut logits: Vec<T>,
    h: &[T],
    w: &[T],
    g: &[T],
    targets: &[u32],
    n: usize,
    vocab: usize,
    hidden: usize,
    want_dw: bool,
) -> (Vec<T>, Option<Vec<T>>) {
    logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter().zip(g.par_iter()))
        .for_each(|(row, (&t, &g))| {
            let lse = row_logsumexp(row);
            for x in row.iter_mut() {
                *x = -g * (*x - lse).exp();
            }
            row[t as usize] = row[t as usize] + g;
        });
    let dh = gemm_nn(&logits, w, n, hidden, vocab, false);
    let dw = want_dw.then(|| gemm_nn(&logits, h, vocab, hidden, n, true));
    (dh, dw)
}

impl CustomOp2 for OutputLogprob {
    fn name(&self) -> &'static str {
        "output-logprob"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, hidden) = l1.shape().dims2()?;
        let (vocab, hidden2) = l2.shape().dims2()?;
        if hidden != hidden2
            || n != self.targets.len()
            || self.targets.iter().any(|&t| t as usize >= vocab)
        {
            candle_core::bail!("output-logprob: shapes or targets do not match");
        }
        let (logits, logp) = match (s1, s2) {
            (CpuStorage::F32(h), CpuStorage::F32(w)) => {
                let (l, p) = output_fwd(
                    slice(h, l1)?,
                    slice(w, l2)?,
                    n,
                    vocab,
                    hidden,
                    &self.targets,
                );
                (CpuStorage::F32(l), CpuStorage::F32(p))
            }
            (CpuStorage::F64(h), CpuStorage::F64(w)) => {
                let (l, p) = output_fwd(
                    slice(h, l1)?,
                    slice(w, l2)?,
                    n,
                    vocab,
                    hidden,
                    &self.targets,
                );
                (CpuStorage::F64(l), CpuStorage::F64(p))
            }
            _ => candle_core::bail!("output-logprob: f32 or f64 only"),
        };
        *self.logits.lock().expect("logits lock") = Some(logits);
        Ok((logp, Shape::from(n)))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, hidden) = h.dims2()?;
        let vocab = w.dim(0)?;
        let want_dw = w.track_op();
        let saved = self.logits.lock().expect("logits lock").take();
        let grad = grad_res.contiguous()?;
        let (hs, hl) = h.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (dh, dw) = match (&*hs, &*ws, &*gs, saved) {
            (
                Storage::Cpu(CpuStorage::F32(hv)),
                Storage::Cpu(CpuStorage::F32(wv)),
                Storage::Cpu(CpuStorage::F32(gv)),
                saved,
            ) => {
                let (hv, wv) = (slice(hv, hl)?, slice(wv, wl)?);
                let logits = match saved {
                    Some(CpuStorage::F32(l)) => l,
                    _ => gemm_nt(hv, wv, n, vocab, hidden),
                };
                let (dh, dw) = output_bwd(
                    logits,
                    hv,
                    wv,
                    slice(gv, gl)?,
                    &self.targets,
                    n,
                    vocab,
                    hidden,
                    want_dw,
                );
                (
                    Tensor::from_vec(dh, h.shape(), h.device())?,
                    dw.map(|dw| Tensor::from_vec(dw, w.shape(), w.device()))
                        .transpose()?,
                )
            }
            (
                Storage::Cpu(CpuStorage::F64(hv)),
                Storage::Cpu(CpuStorage::F64(wv)),
                Storage::Cpu(CpuStorage::F64(gv)),
                saved,
            ) => {
                let (hv, wv) = (slice(hv, hl)?, slice(wv, wl)?);
                let logits = match saved {
                    Some(CpuStorage::F64(l)) => l,
                    _ => gemm_nt(hv, wv, n, vocab, hidden),
                };
                let (dh, dw) = output_bwd(
                    logits,
                    hv,
                    wv,
                    slice(gv, gl)?,
                    &self.targets,
                    n,
                    vocab,
                    hidden,
                    want_dw,
                );
                (
                    Tensor::from_vec(dh, h.shape(), h.device())?,
                    dw.map(|dw| Tensor::from_vec(dw, w.shape(), w.device()))
                        .transpose()?,
                )
            }
            _ => candle_core::bail!("output-logprob backward: f32 or f64 CPU tensors only"),
        };
        Ok((h.track_op().then_some(dh), dw))
    }
}
