//! A projection `x W^T` whose backward computes only the gradients that are wanted, and can
//! leave the weight's gradient in a [`GradSink`] instead of candle's gradient store.
//!
//! candle's own matmul backward computes the gradient of both operands even when one is a
//! frozen weight (a LoRA base, a tied output embedding): for LoRA that doubled the backward pass
//! and allocated a gradient as large as the model. And candle's gradient store adds every
//! gradient it receives to a freshly zeroed tensor of the same size: for full fine-tuning of
//! SmolLM2 that is a zero fill and an extra pass over 106 million weights a step. A sink takes
//! the product straight into its buffer (accumulating in place when a second backward pass
//! comes before the buffer is taken). The op also takes inputs of any rank (`[..., in]`) so that
//! no reshape node (one more zero-and-add in the backward pass) stands between layers.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;

use super::matmul::{Threads, View, product};
use super::sink::{GradSink, SinkElement, weight_gradient};
use super::{cpu_elements, elements, optional_tensor, with_last_dim};

/// `x W^T` for `x` `[..., in]` and `W` `[out, in]`, giving `[..., out]`. With a `sink`, `W`'s
/// gradient goes there and not to candle's gradient store.
pub fn linear(x: &Tensor, w: &Tensor, sink: Option<&GradSink>) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        Linear {
            sink: sink.cloned(),
        },
    )
}

struct Linear {
    sink: Option<GradSink>,
}

/// Rows, input width and output width of a call.
fn dims(x: &Layout, w: &Layout) -> Result<(usize, usize, usize)> {
    let (out, k) = w.shape().dims2()?;
    let x_dims = x.shape().dims();
    if x_dims.last() != Some(&k) {
        candle_core::bail!(
            "linear: input {:?} does not end in the weight's width {k}",
            x_dims
        );
    }
    Ok((x.shape().elem_count() / k.max(1), k, out))
}

fn forward<T: 'static + Float>(x: &[T], w: &[T], (n, k, out): (usize, usize, usize)) -> Vec<T> {
    product(
        View::rows(x, k),
        View::transposed(w, k),
        (n, out, k),
        Threads::All,
    )
}

/// `dx = g W` when wanted; `dW = g^T x` into the sink, or returned when wanted without one.
fn backward<T: SinkElement>(
    x: &[T],
    w: &[T],
    g: &[T],
    (n, k, out): (usize, usize, usize),
    (want_dx, want_dw): (bool, bool),
    sink: Option<&GradSink>,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let dx = want_dx.then(|| {
        product(
            View::rows(g, out),
            View::rows(w, k),
            (n, k, out),
            Threads::All,
        )
    });
    let dw = weight_gradient(
        want_dw,
        sink,
        View::transposed(g, out),
        View::rows(x, k),
        (out, k, n),
    );
    (dx, dw)
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
        let sizes = dims(l1, l2)?;
        let y = by_dtype!(s1.dtype(), self.name(), |T| T::to_cpu_storage_owned(
            forward(elements::<T>(s1, l1)?, elements(s2, l2)?, sizes)
        ));
        Ok((y, with_last_dim(l1.shape(), sizes.2)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let want = (x.track_op(), w.track_op());
        let sink = self.sink.as_ref();
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let sizes = dims(xl, wl)?;
        let (dx, dw) = by_dtype!(x.dtype(), self.name(), |T| {
            let (dx, dw) = backward(
                cpu_elements::<T>(&xs, xl)?,
                cpu_elements(&ws, wl)?,
                cpu_elements(&gs, gl)?,
                sizes,
                want,
                sink,
            );
            (optional_tensor(dx, x)?, optional_tensor(dw, w)?)
        });
        Ok((dx, dw))
    }
}
