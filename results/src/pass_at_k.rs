//! pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
//! Trained on Code"), 1 - C(n-c, k) / C(n, k), for n samples of which c are correct,
//! computed as the product 1 - prod_{i=n-c+1}^{n} (1 - k/i) in f64 (their numerically
//! stable form). Defined only for k <= n.

/// pass@k from n samples with c correct; None when k > n or k = 0.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let product: f64 = ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product();
    Some(1.0 - product)
}

/// pass@k of a set of problems, each given as (samples drawn, correct): the mean over the
/// problems with at least k samples (None when there are none), and how many those are.
/// The one place a set's pass@k is computed: reports, the loop's table and `harness
/// bench`'s summary all use it.
pub fn mean_pass_at_k(counts: &[(u64, u64)], k: u64) -> (Option<f64>, usize) {
    let values: Vec<f64> = counts
        .iter()
        .filter_map(|&(n, c)| pass_at_k(n, c, k))
        .collect();
    let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    (mean, values.len())
}

/// The k reported for n samples: 1, 2, 4, ... up to n (and n itself).
pub fn pass_at_k_levels(n: u64) -> Vec<u64> {
    let mut levels: Vec<u64> = std::iter::successors(Some(1u64), |k| k.checked_mul(2))
        .take_while(|&k| k <= n)
        .collect();
    if n > 0 && levels.last() != Some(&n) {
        levels.push(n);
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C(n, k) exactly, in u128 (enough for n <= 64).
    fn binomial(n: u64, k: u64) -> u128 {
        if k > n {
            return 0;
        }
        let k = k.min(n - k);
        (0..k).fold(1u128, |acc, i| acc * u128::from(n - i) / u128::from(i + 1))
    }

    #[test]
    fn matches_the_exact_binomial_formula_for_every_n_up_to_64() {
        for n in 1..=64u64 {
            for c in 0..=n {
                for k in 1..=n {
                    let exact = 1.0 - binomial(n - c, k) as f64 / binomial(n, k) as f64;
                    let estimate = pass_at_k(n, c, k).unwrap();
                    assert!(
                        (estimate - exact).abs() < 1e-9,
                        "n={n} c={c} k={k}: {estimate} vs {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(pass_at_k(4, 0, 2), Some(0.0));
        assert_eq!(pass_at_k(4, 4, 1), Some(1.0));
        assert_eq!(pass_at_k(1, 1, 1), Some(1.0));
        assert!((pass_at_k(5, 2, 1).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(pass_at_k(3, 1, 4), None);
        assert_eq!(pass_at_k(3, 1, 0), None);
        assert_eq!(pass_at_k_levels(8), vec![1, 2, 4, 8]);
        assert_eq!(pass_at_k_levels(6), vec![1, 2, 4, 6]);
        assert_eq!(pass_at_k_levels(1), vec![1]);
    }
}
