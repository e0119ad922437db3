//! Where fused kernels leave a trained weight's gradient instead of candle's gradient store.
//!
//! candle's gradient store adds every gradient it receives to a freshly zeroed tensor of the
//! same size: for full fine-tuning of SmolLM2 that is a zero fill and an extra pass over each
//! of its 135 million weights a step, and for the embedding a copy of the whole table per
//! lookup. A sink takes a kernel's product straight into its buffer, accumulating in place when
//! a second contribution comes before the buffer is taken (a tied embedding gets one from the
//! lookup and one from the output projection).

use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor};
use num_traits::Float;

use super::matmul::{Threads, View, gemm_into, product};
use super::tensor;

/// Holds a weight's gradient, filled by the fused kernels' backward passes.
#[derive(Clone, Default)]
pub struct GradSink(Arc<Mutex<Option<Buffer>>>);

pub(super) enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl GradSink {
    /// The gradient collected since the last call (shaped like `like`), or `None`.
    pub fn take(&self, like: &Tensor) -> Result<Option<Tensor>> {
        let taken = self.0.lock().expect("gradient sink lock").take();
        match taken {
            None => Ok(None),
            Some(Buffer::F32(v)) => tensor(v, like).map(Some),
            Some(Buffer::F64(v)) => tensor(v, like).map(Some),
        }
    }

    /// Adds `grad`'s row `i` to row `rows[i]` of a `[table_rows, width]` gradient.
    pub(super) fn add_rows<T: SinkElement>(
        &self,
        rows: &[u32],
        grad: &[T],
        width: usize,
        table_rows: usize,
    ) {
        let mut guard = self.0.lock().expect("gradient sink lock");
        if guard.as_mut().and_then(T::vec_mut).is_none() {
            *guard = Some(T::wrap(vec![T::zero(); table_rows * width]));
        }
        let table = guard
            .as_mut()
            .and_then(T::vec_mut)
            .expect("the buffer was just made");
        add_rows(table, rows, grad, width);
    }

    /// Adds `lhs * rhs` (`[m, k] x [k, n]`) to the collected gradient.
    pub(super) fn add_product<T: SinkElement>(
        &self,
        lhs: View<T>,
        rhs: View<T>,
        dims: (usize, usize, usize),
    ) {
        let mut guard = self.0.lock().expect("gradient sink lock");
        match guard.as_mut().and_then(T::vec_mut) {
            Some(collected) => gemm_into(collected, lhs, rhs, dims, true, T::one(), Threads::All),
            None => *guard = Some(T::wrap(product(lhs, rhs, dims, Threads::All))),
        }
    }
}

/// A weight's gradient `lhs * rhs` (`[m, k] x [k, n]`): added into `sink` when there is one
/// (then `None` comes back), returned otherwise, and not computed when not `wanted`.
pub(super) fn weight_gradient<T: SinkElement>(
    wanted: bool,
    sink: Option<&GradSink>,
    lhs: View<T>,
    rhs: View<T>,
    dims: (usize, usize, usize),
) -> Option<Vec<T>> {
    match (wanted, sink) {
        (false, _) => None,
        (true, Some(sink)) => {
            sink.add_product(lhs, rhs, dims);
            None
        }
        (true, None) => Some(product(lhs, rhs, dims, Threads::All)),
    }
}

/// Adds `grad`'s row `i` to row `rows[i]` of `table` (rows of `width`).
pub(super) fn add_rows<T: Float>(table: &mut [T], rows: &[u32], grad: &[T], width: usize) {
    for (&row, g) in rows.iter().zip(grad.chunks(width)) {
        let start = row as usize * width;
        for (t, &g) in table[start..start + width].iter_mut().zip(g) {
            *t = *t + g;
        }
    }
}

/// The element types a sink holds.
pub(super) trait SinkElement: Float + Send + Sync + 'static {
    fn wrap(v: Vec<Self>) -> Buffer;
    fn vec_mut(b: &mut Buffer) -> Option<&mut Vec<Self>>;
}

impl SinkElement for f32 {
    fn wrap(v: Vec<f32>) -> Buffer {
        Buffer::F32(v)
    }

    fn vec_mut(b: &mut Buffer) -> Option<&mut Vec<f32>> {
        match b {
            Buffer::F32(v) => Some(v),
            Buffer::F64(_) => None,
        }
    }
}

impl SinkElement for f64 {
    fn wrap(v: Vec<f64>) -> Buffer {
        Buffer::F64(v)
    }

    fn vec_mut(b: &mut Buffer) -> Option<&mut Vec<f64>> {
        match b {
            Buffer::F64(v) => Some(v),
            Buffer::F32(_) => None,
        }
    }
}
