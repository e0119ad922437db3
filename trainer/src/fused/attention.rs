//! Causal self-attention with the rotary embedding and grouped-query heads, fused into one op
//! forward and one backward.
//!
//! Composed, one layer's attention is a dozen graph nodes (head-split transposes, two rotary
//! embeddings, key/value repetition, a batched product, scaling, softmax, another product and a
//! transpose back), and candle's backward pass gives each node's gradient a zero tensor to be
//! added to: a dozen passes over `[batch, heads, t, t]` scores per layer. Here the op reads the
//! projections in the layout they come out of the linear layers (`[b, t, heads * d]`), works one
//! (sequence, head) pair at a time on one thread (small products, no strided copies) and keeps
//! only the attention probabilities for the backward.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

use super::math::{self, FastExp};
use super::matmul::{Threads, View, product};
use super::{cpu_elements, elements, tensor};

/// Rotary tables in the Hugging Face "halves" layout (dimension `i` pairs with `i + d/2`),
/// row-major `[positions, d/2]`, in f64 so that one table serves f32 and f64.
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Arc<Vec<f64>>,
    pub sin: Arc<Vec<f64>>,
}

/// Attention shape: heads of queries and of keys/values.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub query: usize,
    pub key_value: usize,
}

/// `softmax(rope(q) rope(k)^T / sqrt(d) + causal) v` for `q` `[b, t, heads * d]` and `k`, `v`
/// `[b, t, kv_heads * d]`; query head `h` reads key/value head `h / (heads / kv_heads)`.
/// Returns `[b, t, heads * d]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    rope: &RopeTables,
    heads: Heads,
) -> Result<Tensor> {
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        Attention {
            rope: rope.clone(),
            heads,
            probs: Mutex::new(None),
        },
    )
}

struct Attention {
    rope: RopeTables,
    heads: Heads,
    /// The forward's probabilities, one `[t, t]` block per (sequence, head), for the backward.
    probs: Mutex<Option<Vec<CpuStorage>>>,
}

/// Sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    d: usize,
    heads: usize,
    kv_heads: usize,
}

impl Dims {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Copies head `head` of sequence `seq` out of `x` `[b, t, n_heads * d]` into `[t, d]`,
    /// rotated by the position's angle (`sign` -1 rotates back) when `rope` is given.
    fn gather<T: Float>(
        &self,
        x: &[T],
        n_heads: usize,
        seq: usize,
        head: usize,
        rope: Option<(&RopeTables, f64)>,
    ) -> Vec<T> {
        let (t, d) = (self.t, self.d);
        let mut out = vec![T::zero(); t * d];
        for pos in 0..t {
            let start = (seq * t + pos) * n_heads * d + head * d;
            let row = &x[start..start + d];
            let dst = &mut out[pos * d..(pos + 1) * d];
            match rope {
                Some((tables, sign)) => rotate(row, dst, tables, pos, sign),
                None => dst.copy_from_slice(row),
            }
        }
        out
    }

    /// Adds `[t, d]` back into head `head` of sequence `seq` of `x` `[b, t, n_heads * d]`.
    fn scatter_add<T: Float>(
        &self,
        x: &mut [T],
        n_heads: usize,
        seq: usize,
        head: usize,
        src: &[T],
    ) {
        let (t, d) = (self.t, self.d);
        for pos in 0..t {
            let start = (seq * t + pos) * n_heads * d + head * d;
            for (x, &s) in x[start..start + d]
                .iter_mut()
                .zip(&src[pos * d..(pos + 1) * d])
            {
                *x = *x + s;
            }
        }
    }
}

/// Rotates one head vector at position `pos` by `sign` times its angles.
fn rotate<T: Float>(row: &[T], dst: &mut [T], tables: &RopeTables, pos: usize, sign: f64) {
    let half = row.len() / 2;
    for i in 0..half {
        let c = T::from(tables.cos[pos * half + i]).unwrap_or_else(T::zero);
        let s = T::from(sign * tables.sin[pos * half + i]).unwrap_or_else(T::zero);
        let (a, b) = (row[i], row[i + half]);
        dst[i] = a * c - b * s;
        dst[i + half] = b * c + a * s;
    }
}

/// Softmax of each row `i` of `s` `[t, t]` over columns `0..=i`, in place; columns past the
/// diagonal become 0.
fn causal_softmax_rows<T: FastExp>(s: &mut [T], t: usize) {
    for (i, row) in s.chunks_mut(t).enumerate() {
        let (keep, masked) = row.split_at_mut(i + 1);
        let max = math::max(keep);
        let inv = math::exp_shifted_in_place(keep, max).recip();
        keep.iter_mut().for_each(|x| *x = *x * inv);
        masked.iter_mut().for_each(|x| *x = T::zero());
    }
}

fn scale_of<T: Float>(d: usize) -> T {
    T::from(1.0 / (d as f64).sqrt()).unwrap_or_else(T::one)
}

/// Forward: the output `[b, t, heads * d]` and each (sequence, head)'s probabilities.
fn forward<T: FastExp>(
    q: &[T],
    k: &[T],
    v: &[T],
    rope: &RopeTables,
    n: Dims,
) -> (Vec<T>, Vec<Vec<T>>) {
    let (t, d) = (n.t, n.d);
    let scale = scale_of::<T>(d);
    let per_head: Vec<(Vec<T>, Vec<T>)> = (0..n.b * n.heads)
        .into_par_iter()
        .map(|job| {
            let (seq, head) = (job / n.heads, job % n.heads);
            let kv = head / n.group();
            let qh = n.gather(q, n.heads, seq, head, Some((rope, 1.0)));
            let kh = n.gather(k, n.kv_heads, seq, kv, Some((rope, 1.0)));
            let vh = n.gather(v, n.kv_heads, seq, kv, None);
            let mut probs = product(
                View::rows(&qh, d),
                View::transposed(&kh, d),
                (t, t, d),
                Threads::One,
            );
            probs.iter_mut().for_each(|x| *x = *x * scale);
            causal_softmax_rows(&mut probs, t);
            let out = product(
                View::rows(&probs, t),
                View::rows(&vh, d),
                (t, d, t),
                Threads::One,
            );
            (out, probs)
        })
        .collect();
    let mut out = vec![T::zero(); q.len()];
    let mut saved = Vec::with_capacity(per_head.len());
    for (job, (o, p)) in per_head.into_iter().enumerate() {
        n.scatter_add(&mut out, n.heads, job / n.heads, job % n.heads, &o);
        saved.push(p);
    }
    (out, saved)
}

/// Backward: gradients of `q`, `k`, `v` from the output's gradient `g`.
#[allow(clippy::too_many_arguments)]
fn backward<T: FastExp>(
    q: &[T],
    k: &[T],
    v: &[T],
    g: &[T],
    probs: &[Vec<T>],
    rope: &RopeTables,
    n: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (t, d) = (n.t, n.d);
    let scale = scale_of::<T>(d);
    let per_head: Vec<(Vec<T>, Vec<T>, Vec<T>)> = (0..n.b * n.heads)
        .into_par_iter()
        .map(|job| {
            let (seq, head) = (job / n.heads, job % n.heads);
            let kv = head / n.group();
            let p = &probs[job];
            let qh = n.gather(q, n.heads, seq, head, Some((rope, 1.0)));
            let kh = n.gather(k, n.kv_heads, seq, kv, Some((rope, 1.0)));
            let vh = n.gather(v, n.kv_heads, seq, kv, None);
            let gh = n.gather(g, n.heads, seq, head, None);
            // dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dP P)) * scale.
            let dv = product(
                View::transposed(p, t),
                View::rows(&gh, d),
                (t, d, t),
                Threads::One,
            );
            let mut ds = product(
                View::rows(&gh, d),
                View::transposed(&vh, d),
                (t, t, d),
                Threads::One,
            );
            for (i, (ds, p)) in ds.chunks_mut(t).zip(p.chunks(t)).enumerate() {
                let dot = (0..=i).fold(T::zero(), |acc, j| acc + ds[j] * p[j]);
                for (x, &p) in ds.iter_mut().zip(p) {
                    *x = p * (*x - dot) * scale;
                }
            }
            let dq_rot = product(
                View::rows(&ds, t),
                View::rows(&kh, d),
                (t, d, t),
                Threads::One,
            );
            let dk_rot = product(
                View::transposed(&ds, t),
                View::rows(&qh, d),
                (t, d, t),
                Threads::One,
            );
            // The rotation is orthogonal: its gradient is the rotation back.
            let back = |x: &[T]| n.gather(x, 1, 0, 0, Some((rope, -1.0)));
            (back(&dq_rot), back(&dk_rot), dv)
        })
        .collect();
    let mut dq = vec![T::zero(); q.len()];
    let mut dk = vec![T::zero(); k.len()];
    let mut dv = vec![T::zero(); v.len()];
    for (job, (q_grad, k_grad, v_grad)) in per_head.into_iter().enumerate() {
        let (seq, head) = (job / n.heads, job % n.heads);
        let kv = head / n.group();
        n.scatter_add(&mut dq, n.heads, seq, head, &q_grad);
        n.scatter_add(&mut dk, n.kv_heads, seq, kv, &k_grad);
        n.scatter_add(&mut dv, n.kv_heads, seq, kv, &v_grad);
    }
    (dq, dk, dv)
}

impl Attention {
    fn dims(&self, q: &Layout, k: &Layout, v: &Layout) -> Result<Dims> {
        let (b, t, qw) = q.shape().dims3()?;
        let Heads {
            query: heads,
            key_value: kv_heads,
        } = self.heads;
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || qw % heads != 0 {
            candle_core::bail!("attention: {heads} query heads over {kv_heads} key/value heads");
        }
        let d = qw / heads;
        let kv_shape = Shape::from((b, t, kv_heads * d));
        if k.shape() != &kv_shape || v.shape() != &kv_shape || d % 2 != 0 {
            candle_core::bail!("attention: key/value shapes do not match the queries'");
        }
        if self.rope.cos.len() < t * d / 2 || self.rope.sin.len() < t * d / 2 {
            candle_core::bail!("attention: rotary tables do not cover {t} positions");
        }
        Ok(Dims {
            b,
            t,
            d,
            heads,
            kv_heads,
        })
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "causal-rope-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.dims(l1, l2, l3)?;
        let (out, saved) = by_dtype!(s1.dtype(), self.name(), |T| {
            let (out, probs) = forward(
                elements::<T>(s1, l1)?,
                elements(s2, l2)?,
                elements(s3, l3)?,
                &self.rope,
                n,
            );
            let probs = probs.into_iter().map(T::to_cpu_storage_owned).collect();
            (T::to_cpu_storage_owned(out), probs)
        });
        *self.probs.lock().expect("probabilities lock") = Some(saved);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let n = self.dims(ql, kl, vl)?;
        let Some(saved) = self.probs.lock().expect("probabilities lock").take() else {
            candle_core::bail!("attention backward without a forward pass");
        };
        let (dq, dk, dv) = by_dtype!(q.dtype(), self.name(), |T| {
            let probs = saved
                .into_iter()
                .map(T::cpu_storage_data)
                .collect::<Result<Vec<_>>>()?;
            let (dq, dk, dv) = backward(
                cpu_elements::<T>(&qs, ql)?,
                cpu_elements(&ks, kl)?,
                cpu_elements(&vs, vl)?,
                cpu_elements(&gs, gl)?,
                &probs,
                &self.rope,
                n,
            );
            (tensor(dq, q)?, tensor(dk, k)?, tensor(dv, v)?)
        });
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}
