//! Fused CPU kernels with their backward passes, where composed candle ops spent most of a
//! training step outside matrix products: the output projection with each row's target
//! log-probability (the `[tokens, 49152]` logits of SmolLM2 never become a graph node),
//! causal self-attention with its rotary embedding ([`attention`]), RMSNorm, a projection
//! whose backward skips frozen weights, the same with a LoRA adapter ([`lora_linear`]) and
//! the SwiGLU gate ([`swiglu`]). Each is one op forward and one backward, so candle's backward
//! pass allocates and sums one gradient per op instead of one per elementary step. Other
//! devices and dtypes fall back to the composed ops in [`crate::ops`]. The gradient check
//! covers both paths.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Storage, Tensor, WithDType,
};
use std::sync::atomic::{AtomicBool, Ordering};

use num_traits::Float;
use rayon::prelude::*;

use math::FastExp;
use matmul::{Threads, View, product};

/// Runs `$body` with the type `$t` standing for `f32` or `f64`, as `$dtype` says; other dtypes
/// are an error naming the op. Each kernel is written once, generic over the element type.
macro_rules! by_dtype {
    ($dtype:expr, $op:expr, |$t:ident| $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $t = f64;
                $body
            }
            other => candle_core::bail!("{}: f32 or f64 tensors only, not {other:?}", $op),
        }
    };
}

mod attention;
mod embedding;
mod linear;
mod lora;
mod math;
mod matmul;
mod sink;
mod swiglu;
pub use attention::{Heads, RopeTables, attention};
pub use embedding::embedding;
pub use linear::linear;
pub use lora::lora_linear;
pub use sink::GradSink;
use sink::{SinkElement, weight_gradient};
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

/// The element types the kernels run on.
trait Element: FastExp + SinkElement + WithDType {}
impl Element for f32 {}
impl Element for f64 {}

/// The elements of a contiguous CPU storage under `layout`, as `T`.
fn elements<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    slice(T::cpu_storage_as_slice(storage)?, layout)
}

/// The same for a tensor's storage, read in a backward pass.
fn cpu_elements<'a, T: WithDType>(storage: &'a Storage, layout: &Layout) -> Result<&'a [T]> {
    match storage {
        Storage::Cpu(s) => elements(s, layout),
        _ => candle_core::bail!("the fused kernels take CPU tensors only"),
    }
}

/// `shape` with its last dimension replaced by `last` (a projection's output).
fn with_last_dim(shape: &Shape, last: usize) -> Shape {
    let mut dims = shape.dims().to_vec();
    if let Some(d) = dims.last_mut() {
        *d = last;
    }
    Shape::from(dims)
}

/// A kernel's result as a tensor shaped like `like`.
fn tensor<T: WithDType>(data: Vec<T>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, like.shape(), like.device())
}

/// A gradient that may not have been computed, as a tensor shaped like `like`.
fn optional_tensor<T: WithDType>(data: Option<Vec<T>>, like: &Tensor) -> Result<Option<Tensor>> {
    data.map(|d| tensor(d, like)).transpose()
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
    // Partial sums over fixed blocks of rows, added in block order: a fold/reduce would group
    // rows by how the threads happened to split the work, so `dw` (and a checkpoint trained
    // from it) would differ in the last bits between two runs.
    const ROWS: usize = 32;
    let partial: Vec<Vec<T>> = dx
        .par_chunks_mut(h * ROWS)
        .zip(x.par_chunks(h * ROWS).zip(g.par_chunks(h * ROWS)))
        .map(|(dx, (rows, g))| {
            let mut dw = vec![T::zero(); h];
            for (dx, (row, g)) in dx.chunks_mut(h).zip(rows.chunks(h).zip(g.chunks(h))) {
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
            }
            dw
        })
        .collect();
    let mut dw = vec![T::zero(); h];
    for block in partial {
        for (a, b) in dw.iter_mut().zip(block) {
            *a = *a + b;
        }
    }
    (dx, dw)
}

impl RmsNorm {
    fn forward<T: Element>(
        &self,
        (x, xl): (&CpuStorage, &Layout),
        (w, wl): (&CpuStorage, &Layout),
    ) -> Result<CpuStorage> {
        let y = rms_norm_fwd(elements::<T>(x, xl)?, elements(w, wl)?, self.eps);
        Ok(T::to_cpu_storage_owned(y))
    }

    fn backward<T: Element>(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let grads = rms_norm_bwd(
            cpu_elements::<T>(&xs, xl)?,
            cpu_elements(&ws, wl)?,
            cpu_elements(&gs, gl)?,
            self.eps,
        );
        shaped_like(grads, x, w)
    }
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
        let out = by_dtype!(s1.dtype(), self.name(), |T| self
            .forward::<T>((s1, l1), (s2, l2))?);
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
        let (dx, dw) = by_dtype!(x.dtype(), self.name(), |T| self
            .backward::<T>(x, w, &grad)?);
        Ok((Some(dx), Some(dw)))
    }
}

/// `dst[m, n] = lhs[m, k] * rhs^T` with `rhs` `[n, k]`, all row-major and contiguous.
fn gemm_nt<T: 'static + Float>(lhs: &[T], rhs: &[T], m: usize, n: usize, k: usize) -> Vec<T> {
    product(
        View::rows(lhs, k),
        View::transposed(rhs, k),
        (m, n, k),
        Threads::All,
    )
}

// ---------------------------------------------------------------------------------------
// Output projection and log-probability of the target, fused

/// `log_softmax(hidden W^T)[i, targets[i]]` for `hidden` `[n, h]` and the output weight `W`
/// `[vocab, h]`, without the logits ever becoming a graph node: the forward turns them in place
/// into `exp(logit - max)` and keeps them with each row's `1 / sum`, the backward turns those
/// in place into the logits' gradient (no second exponential) and multiplies it out. Composed,
/// the logits cost a 200 MB gradient, a 200 MB zero tensor to add it to, and a copy per step
/// for SmolLM2 at 1024 tokens.
/// With a `sink`, the weight's gradient goes there and not to candle's gradient store.
pub fn output_logprobs(
    hidden: &Tensor,
    weight: &Tensor,
    targets: Vec<u32>,
    sink: Option<&GradSink>,
) -> Result<Tensor> {
    hidden.contiguous()?.apply_op2(
        &weight.contiguous()?,
        OutputLogprob {
            targets,
            sink: sink.cloned(),
            saved: std::sync::Mutex::new(None),
        },
    )
}

struct OutputLogprob {
    targets: Vec<u32>,
    sink: Option<GradSink>,
    /// From the forward pass, for the backward: `exp(logit - row max)` `[n, vocab]` and each
    /// row's `1 / sum(exp(logit - row max))`.
    saved: std::sync::Mutex<Option<(CpuStorage, CpuStorage)>>,
}

/// Forward: each row's log-probability of its target, the rows' exponentials (in place of the
/// logits) and their inverse sums.
fn output_fwd<T: Element>(
    h: &[T],
    w: &[T],
    (n, vocab, hidden): (usize, usize, usize),
    targets: &[u32],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut exps = gemm_nt(h, w, n, vocab, hidden);
    let (logp, inv_sums): (Vec<T>, Vec<T>) = exps
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let max = math::max(row);
            let shifted_target = row[t as usize] - max;
            let sum = math::exp_shifted_in_place(row, max);
            (shifted_target - sum.ln(), sum.recip())
        })
        .unzip();
    (logp, exps, inv_sums)
}

/// Backward: `dlogits = g (onehot - softmax)` in place of the exponentials, then
/// `dh = dlogits W`, `dW = dlogits^T h`.
#[allow(clippy::too_many_arguments)]
fn output_bwd<T: Element>(
    (mut exps, inv_sums): (Vec<T>, Vec<T>),
    h: &[T],
    w: &[T],
    g: &[T],
    targets: &[u32],
    (n, vocab, hidden): (usize, usize, usize),
    (want_dw, sink): (bool, Option<&GradSink>),
) -> (Vec<T>, Option<Vec<T>>) {
    exps.par_chunks_mut(vocab)
        .zip(targets.par_iter().zip(g.par_iter().zip(&inv_sums)))
        .for_each(|(row, (&t, (&g, &inv_sum)))| {
            let factor = -g * inv_sum;
            for x in row.iter_mut() {
                *x *= factor;
            }
            row[t as usize] += g;
        });
    let dh = product(
        View::rows(&exps, vocab),
        View::rows(w, hidden),
        (n, hidden, vocab),
        Threads::All,
    );
    let dw = weight_gradient(
        want_dw,
        sink,
        View::transposed(&exps, vocab),
        View::rows(h, hidden),
        (vocab, hidden, n),
    );
    (dh, dw)
}

impl OutputLogprob {
    fn forward<T: Element>(
        &self,
        (h, hl): (&CpuStorage, &Layout),
        (w, wl): (&CpuStorage, &Layout),
        sizes: (usize, usize, usize),
    ) -> Result<CpuStorage> {
        let (logp, exps, inv) = output_fwd(
            elements::<T>(h, hl)?,
            elements(w, wl)?,
            sizes,
            &self.targets,
        );
        *self.saved.lock().expect("output lock") =
            Some((T::to_cpu_storage_owned(exps), T::to_cpu_storage_owned(inv)));
        Ok(T::to_cpu_storage_owned(logp))
    }

    fn backward<T: Element>(
        &self,
        h: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (n, hidden) = h.dims2()?;
        let sizes = (n, w.dim(0)?, hidden);
        let Some((exps, inv)) = self.saved.lock().expect("output lock").take() else {
            candle_core::bail!("output-logprob backward without a forward pass");
        };
        let (hs, hl) = h.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (dh, dw) = output_bwd(
            (T::cpu_storage_data(exps)?, T::cpu_storage_data(inv)?),
            cpu_elements::<T>(&hs, hl)?,
            cpu_elements(&ws, wl)?,
            cpu_elements(&gs, gl)?,
            &self.targets,
            sizes,
            (w.track_op(), self.sink.as_ref()),
        );
        Ok((tensor(dh, h)?, optional_tensor(dw, w)?))
    }
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
        let sizes = (n, vocab, hidden);
        let logp = by_dtype!(s1.dtype(), self.name(), |T| self.forward::<T>(
            (s1, l1),
            (s2, l2),
            sizes
        )?);
        Ok((logp, Shape::from(n)))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let (dh, dw) = by_dtype!(h.dtype(), self.name(), |T| self
            .backward::<T>(h, w, &grad)?);
        Ok((h.track_op().then_some(dh), dw))
    }
}
