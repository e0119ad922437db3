//! A frozen projection with its low-rank adapter, `x W^T + s (drop(x) A^T) B^T`, as one op.
//!
//! Composed, every adapted projection is five graph nodes (the base product, two adapter
//! products, the scale and the sum), and candle's backward pass gives each a zero tensor to add
//! its gradient into: passes over `[tokens, out]` activations that cost more than the rank-16
//! products themselves. One op computes the output in two products (the adapter's accumulated
//! into the base's) and, backward, the input's gradient the same way plus the two factors'.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use num_traits::Float;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::matmul::{Threads, View, gemm_into, product, scaled_product};
use super::{cpu_elements, elements, optional_tensor, with_last_dim};

/// `x W^T + scale * (dropout(x) A^T) B^T` for `x` `[..., in]`, the frozen `W` `[out, in]`, `A`
/// `[r, in]` and `B` `[out, r]`. `dropout` is the probability of zeroing an input element of the
/// adapter's path (0 outside training); kept elements are scaled by `1 / (1 - dropout)`, and
/// `seed` draws which (the same seed, the same elements).
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    (dropout, seed): (f64, u64),
) -> Result<Tensor> {
    if !(0.0..1.0).contains(&dropout) {
        candle_core::bail!("lora: dropout {dropout} outside [0, 1)");
    }
    x.contiguous()?.apply_op3(
        &a.contiguous()?,
        &b.contiguous()?,
        LoraLinear {
            weight: w.detach().contiguous()?,
            scale,
            dropout,
            seed,
            saved: Mutex::new(None),
        },
    )
}

struct LoraLinear {
    weight: Tensor,
    scale: f64,
    dropout: f64,
    seed: u64,
    /// From the forward pass: `drop(x) A^T` `[n, r]` and the dropout's multipliers `[n, in]`.
    saved: Mutex<Option<Saved>>,
}

struct Saved {
    xa: CpuStorage,
    mask: Option<CpuStorage>,
}

#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    inp: usize,
    out: usize,
    r: usize,
}

fn cast<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::zero)
}

/// Elements of a dropout mask drawn by one task: each task starts its own generator at its
/// chunk's place in the stream.
const MASK_CHUNK: usize = 1 << 16;

/// Each input element's multiplier: 0 with probability `p`, otherwise `1 / (1 - p)`. Element
/// `i` is decided by the `i`-th 64-bit draw of ChaCha8 seeded with `seed` (as a number in
/// [0, 1), `random::<f64>()`, below `p`). The draws are made in parallel, in chunks that each
/// set their generator to the chunk's first draw (two 32-bit words a draw), so the mask is the
/// one a single generator would give, whatever the thread count. Drawn on one thread (tens of
/// millions of draws a step), the mask took 12% of `perf`'s samples of an SFT epoch on 2
/// cores while the other core waited.
fn dropout_mask<T: Float + Send + Sync>(len: usize, p: f64, seed: u64) -> Vec<T> {
    let keep = cast::<T>(1.0 / (1.0 - p));
    let mut mask = vec![T::zero(); len];
    mask.par_chunks_mut(MASK_CHUNK)
        .enumerate()
        .for_each(|(chunk_index, chunk)| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rng.set_word_pos(2 * (chunk_index * MASK_CHUNK) as u128);
            for m in chunk {
                if rng.random::<f64>() >= p {
                    *m = keep;
                }
            }
        });
    mask
}

fn times_mask<T: Float + Send + Sync>(x: &[T], mask: &[T]) -> Vec<T> {
    x.par_iter().zip(mask).map(|(&x, &m)| x * m).collect()
}

/// Forward: the output `[n, out]`, and what the backward needs.
fn forward<T: 'static + Float + Send + Sync>(
    x: &[T],
    w: &[T],
    a: &[T],
    b: &[T],
    n: Dims,
    scale: f64,
    (dropout, seed): (f64, u64),
) -> (Vec<T>, Vec<T>, Option<Vec<T>>) {
    let mask = (dropout > 0.0).then(|| dropout_mask::<T>(x.len(), dropout, seed));
    let dropped = mask.as_ref().map(|m| times_mask(x, m));
    let xd = dropped.as_deref().unwrap_or(x);
    let xa = product(
        View::rows(xd, n.inp),
        View::transposed(a, n.inp),
        (n.n, n.r, n.inp),
        Threads::All,
    );
    let mut y = product(
        View::rows(x, n.inp),
        View::transposed(w, n.inp),
        (n.n, n.out, n.inp),
        Threads::All,
    );
    gemm_into(
        &mut y,
        View::rows(&xa, n.r),
        View::transposed(b, n.r),
        (n.n, n.out, n.r),
        true,
        cast(scale),
        Threads::All,
    );
    (y, xa, mask)
}

/// Gradients of `x`, `A` and `B` (each only where `want` asks) from the output's gradient.
#[allow(clippy::too_many_arguments)]
fn backward<T: 'static + Float + Send + Sync>(
    x: &[T],
    w: &[T],
    a: &[T],
    b: &[T],
    g: &[T],
    (xa, mask): (&[T], Option<&[T]>),
    n: Dims,
    scale: f64,
    want: [bool; 3],
) -> [Option<Vec<T>>; 3] {
    // u = s g B, the gradient at the adapter's rank-width intermediate.
    let u = scaled_product(
        View::rows(g, n.out),
        View::rows(b, n.r),
        (n.n, n.r, n.out),
        cast(scale),
        Threads::All,
    );
    let dx = want[0].then(|| {
        let mut dx = product(
            View::rows(g, n.out),
            View::rows(w, n.inp),
            (n.n, n.inp, n.out),
            Threads::All,
        );
        match mask {
            None => gemm_into(
                &mut dx,
                View::rows(&u, n.r),
                View::rows(a, n.inp),
                (n.n, n.inp, n.r),
                true,
                T::one(),
                Threads::All,
            ),
            Some(mask) => {
                let ua = product(
                    View::rows(&u, n.r),
                    View::rows(a, n.inp),
                    (n.n, n.inp, n.r),
                    Threads::All,
                );
                dx.par_iter_mut()
                    .zip(ua.par_iter().zip(mask))
                    .for_each(|(d, (&ua, &m))| *d = *d + ua * m);
            }
        }
        dx
    });
    let da = want[1].then(|| {
        let dropped = mask.map(|m| times_mask(x, m));
        let xd = dropped.as_deref().unwrap_or(x);
        product(
            View::transposed(&u, n.r),
            View::rows(xd, n.inp),
            (n.r, n.inp, n.n),
            Threads::All,
        )
    });
    let db = want[2].then(|| {
        scaled_product(
            View::transposed(g, n.out),
            View::rows(xa, n.r),
            (n.out, n.r, n.n),
            cast(scale),
            Threads::All,
        )
    });
    [dx, da, db]
}

impl LoraLinear {
    fn dims(&self, x: &Layout, a: &Layout, b: &Layout) -> Result<Dims> {
        let x_dims = x.shape().dims();
        let inp = x_dims.last().copied().unwrap_or(0);
        let n = x.shape().elem_count() / inp.max(1);
        let (out, w_inp) = self.weight.dims2()?;
        let (r, a_inp) = a.shape().dims2()?;
        let (b_out, b_r) = b.shape().dims2()?;
        if w_inp != inp || a_inp != inp || b_out != out || b_r != r {
            candle_core::bail!(
                "lora: input {x_dims:?}, weight [{out}, {w_inp}], A [{r}, {a_inp}], B [{b_out}, {b_r}] do not fit"
            );
        }
        Ok(Dims { n, inp, out, r })
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
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
        let (ws, wl) = self.weight.storage_and_layout();
        let (y, saved) = by_dtype!(s1.dtype(), self.name(), |T| {
            let (y, xa, mask) = forward(
                elements::<T>(s1, l1)?,
                cpu_elements(&ws, wl)?,
                elements(s2, l2)?,
                elements(s3, l3)?,
                n,
                self.scale,
                (self.dropout, self.seed),
            );
            let saved = Saved {
                xa: T::to_cpu_storage_owned(xa),
                mask: mask.map(T::to_cpu_storage_owned),
            };
            (T::to_cpu_storage_owned(y), saved)
        });
        *self.saved.lock().expect("lora lock") = Some(saved);
        Ok((y, with_last_dim(l1.shape(), n.out)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = self.weight.storage_and_layout();
        let (as_, al) = a.storage_and_layout();
        let (bs, bl) = b.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let n = self.dims(xl, al, bl)?;
        let want = [x.track_op(), a.track_op(), b.track_op()];
        let Some(Saved { xa, mask }) = self.saved.lock().expect("lora lock").take() else {
            candle_core::bail!("lora backward without a forward pass");
        };
        let (dx, da, db) = by_dtype!(x.dtype(), self.name(), |T| {
            let mask = mask.map(T::cpu_storage_data).transpose()?;
            let [dx, da, db] = backward(
                cpu_elements::<T>(&xs, xl)?,
                cpu_elements(&ws, wl)?,
                cpu_elements(&as_, al)?,
                cpu_elements(&bs, bl)?,
                cpu_elements(&gs, gl)?,
                (&T::cpu_storage_data(xa)?, mask.as_deref()),
                n,
                self.scale,
                want,
            );
            (
                optional_tensor(dx, x)?,
                optional_tensor(da, a)?,
                optional_tensor(db, b)?,
            )
        });
        Ok((dx, da, db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(rng: &mut rand_chacha::ChaCha8Rng, shape: (usize, usize)) -> Result<Tensor> {
        let v: Vec<f64> = (0..shape.0 * shape.1)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    /// The mask drawn in parallel chunks is the one a single generator draws in order (the
    /// draws straddle three chunk borders here).
    #[test]
    fn dropout_mask_is_the_single_stream_draw() {
        let (len, p, seed) = (3 * MASK_CHUNK + 77, 0.05, 1234);
        let keep = (1.0 / (1.0 - p)) as f32;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let sequential: Vec<f32> = (0..len)
            .map(|_| match rng.random::<f64>() < p {
                true => 0.0,
                false => keep,
            })
            .collect();
        let parallel = dropout_mask::<f32>(len, p, seed);
        assert_eq!(parallel, sequential);
        let dropped = parallel.iter().filter(|&&m| m == 0.0).count();
        assert!(
            (8_000..12_000).contains(&dropped),
            "{dropped} of {len} dropped"
        );
    }

    /// With dropout the gradients must follow the same mask as the forward pass: checked
    /// against finite differences, which see one mask because the seed is fixed.
    #[test]
    fn gradients_under_dropout_match_finite_differences() -> Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (n, inp, out, r) = (5, 7, 6, 3);
        let x = Var::from_tensor(&random(&mut rng, (n, inp))?)?;
        let w = random(&mut rng, (out, inp))?;
        let a = Var::from_tensor(&random(&mut rng, (r, inp))?)?;
        let b = Var::from_tensor(&random(&mut rng, (out, r))?)?;
        let weights = random(&mut rng, (n, out))?;
        let dropout = (0.4, 11);
        let loss = || -> Result<Tensor> {
            let y = lora_linear(
                x.as_tensor(),
                &w,
                a.as_tensor(),
                b.as_tensor(),
                1.5,
                dropout,
            )?;
            (y * &weights)?.sum_all()
        };
        let grads = loss()?.backward()?;
        for var in [&x, &a, &b] {
            let grad = grads
                .get(var.as_tensor())
                .expect("gradient")
                .flatten_all()?;
            let grad = grad.to_vec1::<f64>()?;
            let original = var.as_tensor().copy()?;
            let flat = original.flatten_all()?.to_vec1::<f64>()?;
            for i in 0..flat.len() {
                let at = |delta: f64| -> Result<f64> {
                    let mut v = flat.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, original.shape(), &Device::Cpu)?)?;
                    loss()?.to_scalar::<f64>()
                };
                let numeric = (at(1e-6)? - at(-1e-6)?) / 2e-6;
                var.set(&original)?;
                assert!(
                    (numeric - grad[i]).abs() < 1e-6,
                    "element {i}: analytic {} vs finite difference {numeric}",
                    grad[i]
                );
            }
        }
        // The mask did act: the same inputs without dropout give another output.
        let without = lora_linear(
            x.as_tensor(),
            &w,
            a.as_tensor(),
            b.as_tensor(),
            1.5,
            (0.0, 0),
        )?;
        let with = lora_linear(
            x.as_tensor(),
            &w,
            a.as_tensor(),
            b.as_tensor(),
            1.5,
            dropout,
        )?;
        let differ = (without - with)?.abs()?.sum_all()?.to_scalar::<f64>()?;
        assert!(differ > 1e-3, "dropout changed nothing ({differ})");
        Ok(())
    }
}
