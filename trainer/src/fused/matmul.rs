//! Matrix products over slices for the fused kernels, through the `gemm` crate (the one candle
//! itself uses on the CPU), with the strides checked before the unsafe call.

use num_traits::Float;

/// A matrix over a slice: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a, T> {
    data: &'a [T],
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> View<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub(super) fn rows(data: &'a [T], cols: usize) -> Self {
        View {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub(super) fn transposed(data: &'a [T], cols: usize) -> Self {
        View {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// Whether a product splits across the thread pool or stays on the calling thread (a kernel
/// that already runs one product per thread).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Threads {
    One,
    All,
}

/// `dst = (dst if accumulate) + scale * lhs [m, k] * rhs [k, n]`, `dst` row-major `[m, n]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_into<T: 'static + Float>(
    dst: &mut [T],
    lhs: View<T>,
    rhs: View<T>,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    scale: T,
    threads: Threads,
) {
    assert!(
        dst.len() == m * n && lhs.covers(m, k) && rhs.covers(k, n),
        "gemm: views do not match {m}x{k} times {k}x{n}"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|x| *x = T::zero());
        }
        return;
    }
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: `covers` checked that every index the strides reach lies inside `lhs` and `rhs`,
    // and `dst` holds m*n elements addressed row-major.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::one(),
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `lhs [m, k] * rhs [k, n]` as a new row-major `[m, n]`.
pub(super) fn product<T: 'static + Float>(
    lhs: View<T>,
    rhs: View<T>,
    dims: (usize, usize, usize),
    threads: Threads,
) -> Vec<T> {
    scaled_product(lhs, rhs, dims, T::one(), threads)
}

/// `scale * lhs [m, k] * rhs [k, n]` as a new row-major `[m, n]`.
pub(super) fn scaled_product<T: 'static + Float>(
    lhs: View<T>,
    rhs: View<T>,
    (m, n, k): (usize, usize, usize),
    scale: T,
    threads: Threads,
) -> Vec<T> {
    let mut dst = vec![T::zero(); m * n];
    gemm_into(&mut dst, lhs, rhs, (m, n, k), false, scale, threads);
    dst
}
