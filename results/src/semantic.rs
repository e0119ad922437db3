//! Semantic diversity (SPEC.md's SentenceBERT diversity): 1 - the mean pairwise cosine
//! similarity of one question's responses, on sentence embeddings.

/// Turns texts into L2-normalised sentence embeddings, one per text, in order.
pub trait Embedder {
    fn embed(&mut self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>>;
}

/// 1 - mean cosine similarity over all pairs of the vectors (which need not be normalised).
/// None for fewer than two vectors.
pub fn semantic_diversity(vectors: &[&[f32]]) -> Option<f64> {
    if vectors.len() < 2 {
        return None;
    }
    let norms: Vec<f64> = vectors.iter().map(|v| dot(v, v).sqrt()).collect();
    let mut total = 0.0;
    let mut pairs = 0usize;
    for i in 0..vectors.len() {
        for j in i + 1..vectors.len() {
            let denominator = norms[i] * norms[j];
            let cosine = if denominator > 0.0 {
                dot(vectors[i], vectors[j]) / denominator
            } else {
                0.0
            };
            total += cosine;
            pairs += 1;
        }
    }
    Some(1.0 - total / pairs as f64)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_by_hand() {
        // Identical directions: no diversity; orthogonal: 1; opposite: 2.
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 2.0];
        let c = [-3.0f32, 0.0];
        assert_eq!(semantic_diversity(&[&a, &a]), Some(0.0));
        assert_eq!(semantic_diversity(&[&a, &b]), Some(1.0));
        assert_eq!(semantic_diversity(&[&a, &c]), Some(2.0));
        // Three vectors, pairs (a,a)=1, (a,b)=0, (a,b)=0: 1 - 1/3.
        let d = semantic_diversity(&[&a, &a, &b]).unwrap();
        assert!((d - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(semantic_diversity(&[&a]), None);
        assert_eq!(semantic_diversity(&[]), None);
    }
}
