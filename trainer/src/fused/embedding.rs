//! The token-embedding lookup, whose backward adds each position's gradient into the table's
//! gradient in place.
//!
//! candle's `index_select` backward copies the whole accumulated table gradient to add rows to
//! it (`index_add`), after the gradient store has zero-filled it: for SmolLM2's 49152 x 576
//! table, two 113 MB passes a step to place 1024 rows.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};

use super::sink::{GradSink, SinkElement, add_rows};
use super::{cpu_elements, elements, optional_tensor};

/// Rows `ids` of `table` `[vocab, width]`, shaped `[ids..., width]` as `shape` says (its
/// elements must be the number of ids). With a `sink`, the table's gradient goes there and not
/// to candle's gradient store.
pub fn embedding(
    table: &Tensor,
    ids: Vec<u32>,
    shape: &[usize],
    sink: Option<&GradSink>,
) -> Result<Tensor> {
    if shape.iter().product::<usize>() != ids.len() {
        candle_core::bail!(
            "embedding: {} ids do not fill the shape {shape:?}",
            ids.len()
        );
    }
    table.contiguous()?.apply_op1(Embedding {
        ids,
        shape: shape.to_vec(),
        sink: sink.cloned(),
    })
}

struct Embedding {
    ids: Vec<u32>,
    shape: Vec<usize>,
    sink: Option<GradSink>,
}

fn lookup<T: Copy>(table: &[T], ids: &[u32], width: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(ids.len() * width);
    for &id in ids {
        let start = id as usize * width;
        out.extend_from_slice(&table[start..start + width]);
    }
    out
}

/// The table's gradient: into the sink, or as a new dense tensor's data without one.
fn scatter<T: SinkElement>(
    grad: &[T],
    ids: &[u32],
    (vocab, width): (usize, usize),
    sink: Option<&GradSink>,
) -> Option<Vec<T>> {
    match sink {
        Some(sink) => {
            sink.add_rows(ids, grad, width, vocab);
            None
        }
        None => {
            let mut table = vec![T::zero(); vocab * width];
            add_rows(&mut table, ids, grad, width);
            Some(table)
        }
    }
}

impl CustomOp1 for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (vocab, width) = layout.shape().dims2()?;
        if let Some(&bad) = self.ids.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!("embedding: token id {bad} is outside the {vocab}-token table");
        }
        let out = by_dtype!(storage.dtype(), self.name(), |T| T::to_cpu_storage_owned(
            lookup(elements::<T>(storage, layout)?, &self.ids, width)
        ));
        let mut dims = self.shape.clone();
        dims.push(width);
        Ok((out, Shape::from(dims)))
    }

    fn bwd(&self, table: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let sizes = table.dims2()?;
        let grad = grad_res.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let sink = self.sink.as_ref();
        let dense = by_dtype!(table.dtype(), self.name(), |T| optional_tensor(
            scatter(cpu_elements::<T>(&gs, gl)?, &self.ids, sizes, sink),
            table
        )?);
        Ok(dense)
    }
}
