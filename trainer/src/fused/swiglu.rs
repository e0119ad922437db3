//! `silu(gate) * up`, the feed-forward gate of Llama-family models, as one pass forward and
//! one backward.
//!
//! Composed, candle spends a pass on `silu`, one on the product, and several in `silu`'s
//! backward (sigmoid, its complement, two products, a sum) over the `[tokens, intermediate]`
//! activations of every layer; fused, each direction reads its inputs once.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::math::FastExp;
use super::{shaped_like, slice};

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
        let out = match (s1, s2) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => {
                CpuStorage::F32(swiglu_fwd(slice(g, l1)?, slice(u, l2)?))
            }
            (CpuStorage::F64(g), CpuStorage::F64(u)) => {
                CpuStorage::F64(swiglu_fwd(slice(g, l1)?, slice(u, l2)?))
            }
            _ => candle_core::bail!("swiglu: f32 or f64 only"),
        };
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
        let (dg, du) = match (&*gs, &*us, &*ds) {
            (
                Storage::Cpu(CpuStorage::F32(g)),
                Storage::Cpu(CpuStorage::F32(u)),
                Storage::Cpu(CpuStorage::F32(d)),
            ) => shaped_like(
                swiglu_bwd(slice(g, gl)?, slice(u, ul)?, slice(d, dl)?),
                gate,
                up,
            )?,
            (
                Storage::Cpu(CpuStorage::F64(g)),
                Storage::Cpu(CpuStorage::F64(u)),
                Storage::Cpu(CpuStorage::F64(d)),
            ) => shaped_like(
                swiglu_bwd(slice(g, gl)?, slice(u, ul)?, slice(d, dl)?),
                gate,
                up,
            )?,
            _ => candle_core::bail!("swiglu backward: f32 or f64 CPU tensors only"),
        };
        Ok((Some(dg), Some(du)))
    }
}
