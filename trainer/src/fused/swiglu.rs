//! `silu(gate) * up`, the feed-forward gate of Llama-family models, as one pass forward and
//! one backward.
//!
//! Composed, candle spends a pass on `silu`, one on the product, and several in `silu`'s
//! backward (sigmoid, its complement, two products, a sum) over the `[tokens, intermediate]`
//! activations of every layer; fused, each direction reads its inputs once.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::math::FastExp;
use super::{cpu_elements, elements, shaped_like};

/// `silu(gate) * up` for two tensors of one shape.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

struct SwiGlu;

/// Elements per parallel task: large enough that scheduling costs little.
const CHUNK: usize = 4096;

fn sigmoid<T: FastExp>(x: T) -> T {
    (T::one() + (-x).fast_exp()).recip()
}

fn swiglu_fwd<T: FastExp>(g: &[T], u: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); g.len()];
    out.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(out, (g, u))| {
            for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
                *o = g * sigmoid(g) * u;
            }
        });
    out
}

/// With `s = sigmoid(g)`: `d up = dy * g * s` and `d gate = dy * up * s * (1 + g * (1 - s))`.
fn swiglu_bwd<T: FastExp>(g: &[T], u: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
    let mut dg = vec![T::zero(); g.len()];
    let mut du = vec![T::zero(); g.len()];
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .zip(dy.par_chunks(CHUNK))
        .for_each(|(((dg, du), (g, u)), dy)| {
            for i in 0..g.len() {
                let s = sigmoid(g[i]);
                du[i] = dy[i] * g[i] * s;
                dg[i] = dy[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
            }
        });
    (dg, du)
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "swiglu: gate {:?} and up {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let out = by_dtype!(s1.dtype(), self.name(), |T| T::to_cpu_storage_owned(
            swiglu_fwd(elements::<T>(s1, l1)?, elements(s2, l2)?)
        ));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let (gs, gl) = gate.storage_and_layout();
        let (us, ul) = up.storage_and_layout();
        let (ds, dl) = grad.storage_and_layout();
        let (dg, du) = by_dtype!(gate.dtype(), self.name(), |T| shaped_like(
            swiglu_bwd(
                cpu_elements::<T>(&gs, gl)?,
                cpu_elements(&us, ul)?,
                cpu_elements(&ds, dl)?,
            ),
            gate,
            up,
        )?);
        Ok((Some(dg), Some(du)))
    }
}
