//! Elementwise math the fused kernels need, written so that the compiler vectorises it.
//!
//! glibc's `expf` is a function call per element; a training step of SmolLM2 takes about 180
//! million exponentials (the 49152-way output softmax, the attention softmax, the SwiGLU
//! sigmoid), which cost about 6% of the step that way (a profile of full fine-tuning). A
//! branch-free polynomial inlines into the kernels' loops, where the compiler can vectorise it;
//! after the change `expf` no longer appeared in the profile. Sums are split over independent
//! accumulators for the same reason (a single running float sum cannot be reordered, so it
//! cannot vectorise).

use num_traits::Float;

/// `exp`, fast where the type allows.
pub(crate) trait FastExp: Float + Send + Sync + 'static {
    fn fast_exp(self) -> Self;
}

impl FastExp for f64 {
    /// f64 runs the gradient check, where accuracy is the point: the library `exp`.
    #[inline]
    fn fast_exp(self) -> Self {
        self.exp()
    }
}

impl FastExp for f32 {
    /// `2^n e^r` with `n = round(x / ln 2)` and `|r| <= ln(2) / 2`, `e^r` by its Taylor series
    /// to degree 7 (truncation error below 6e-9 relative, under f32's 6e-8 rounding). Inputs
    /// are clamped to [-87, 88] (results from 1.6e-38 to 1.7e38): no infinities or subnormals
    /// come out, and -inf comes out as 1.6e-38, which the kernels only ever add to sums of at
    /// least 1.
    #[inline]
    fn fast_exp(self) -> Self {
        const LOG2_E: f32 = std::f32::consts::LOG2_E;
        // ln 2 split in two so that n * LN2_HI is exact.
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        // Adding and removing 1.5 * 2^23 rounds to the nearest integer.
        const ROUND: f32 = 12_582_912.0;
        let x = self.clamp(-87.0, 88.0);
        let n = (x * LOG2_E + ROUND) - ROUND;
        let r = (x - n * LN2_HI) - n * LN2_LO;
        let mut p = 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
        p * scale
    }
}

/// The sum of `xs`, over 16 independent partial sums.
#[inline]
pub(crate) fn sum<T: Float>(xs: &[T]) -> T {
    let mut lanes = [T::zero(); 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = *lane + x;
        }
    }
    let tail = rest.iter().fold(T::zero(), |acc, &x| acc + x);
    lanes.iter().fold(tail, |acc, &x| acc + x)
}

/// The largest element of `xs` (negative infinity when empty).
#[inline]
pub(crate) fn max<T: Float>(xs: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(x);
        }
    }
    let tail = rest.iter().fold(T::neg_infinity(), |acc, &x| acc.max(x));
    lanes.iter().fold(tail, |acc, &x| acc.max(x))
}

/// `exp(x - shift)` in place; returns the sum of the results.
#[inline]
pub(crate) fn exp_shifted_in_place<T: FastExp>(xs: &mut [T], shift: T) -> T {
    for x in xs.iter_mut() {
        *x = (*x - shift).fast_exp();
    }
    sum(xs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_the_library_within_f32_rounding() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 / 10_000.0;
            let want = (x as f64).exp();
            let got = x.fast_exp() as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(0f32.fast_exp(), 1.0);
        let masked = f32::NEG_INFINITY.fast_exp();
        assert!(masked > 0.0 && masked < 1e-37, "exp(-inf) gave {masked}");
        assert!(f32::INFINITY.fast_exp().is_finite());
    }

    #[test]
    fn lane_sums_and_maxima_cover_every_element() {
        let xs: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        assert_eq!(sum(&xs), xs.iter().sum::<f32>());
        assert_eq!(max(&xs), 15.0);
        assert_eq!(max::<f32>(&[]), f32::NEG_INFINITY);
        let mut row = vec![1.0f32, 2.0, 3.0];
        let total = exp_shifted_in_place(&mut row, 3.0);
        assert!((total - (1.0 + (-1f32).exp() + (-2f32).exp())).abs() < 1e-6);
    }
}
