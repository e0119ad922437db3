//! Token sequences and padded batches. A batch holds sequences of similar length (length
//! bucketing) so that little compute goes to padding.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// A tokenised example: the prompt's tokens followed by the response's. Only response tokens
/// are trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
}

impl Sequence {
    /// Joins a prompt and a response, keeping at most `max_len` tokens (the response's end is
    /// cut first). `None` when no response token fits.
    pub fn new(prompt: Vec<u32>, response: Vec<u32>, max_len: usize) -> Option<Self> {
        let prompt_len = prompt.len();
        if prompt_len >= max_len || response.is_empty() {
            return None;
        }
        let mut tokens = prompt;
        tokens.extend(response);
        tokens.truncate(max_len);
        Some(Sequence { tokens, prompt_len })
    }

    pub fn response_len(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
}

/// Padded token ids `[b, t]` and the loss mask `[b, t - 1]` (1 where the next token is a
/// response token).
pub struct Padded {
    pub tokens: Tensor,
    pub mask: Tensor,
    /// Response tokens in the batch.
    pub response_tokens: usize,
    /// All real (non-padding) tokens in the batch.
    pub tokens_in_batch: usize,
}

/// Pads `seqs` on the right to their longest length.
pub fn pad(seqs: &[&Sequence], dtype: DType, device: &Device) -> Result<Padded> {
    let t = seqs
        .iter()
        .map(|s| s.tokens.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let b = seqs.len();
    let mut tokens = vec![0u32; b * t];
    let mut mask = vec![0f32; b * (t - 1)];
    let mut response_tokens = 0;
    for (i, s) in seqs.iter().enumerate() {
        tokens[i * t..i * t + s.tokens.len()].copy_from_slice(&s.tokens);
        // Position j predicts token j + 1.
        for j in s.prompt_len.max(1) - 1..s.tokens.len() - 1 {
            mask[i * (t - 1) + j] = 1.0;
            response_tokens += 1;
        }
    }
    Ok(Padded {
        tokens: Tensor::from_vec(tokens, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t - 1), device)?.to_dtype(dtype)?,
        response_tokens,
        tokens_in_batch: seqs.iter().map(|s| s.tokens.len()).sum(),
    })
}

/// Groups item indices into batches of `batch_size` with similar lengths, in a seeded random
/// order: shuffle, sort within windows of 16 batches by length, cut, shuffle the batches.
pub fn bucketed_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let window = batch_size.max(1) * 16;
    let mut batches = Vec::new();
    for chunk in order.chunks_mut(window) {
        chunk.sort_by_key(|&i| lengths[i]);
        batches.extend(chunk.chunks(batch_size.max(1)).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_covers_exactly_the_response() -> Result<()> {
        let a = Sequence::new(vec![1, 2, 3], vec![4, 5], 100).unwrap();
        let b = Sequence::new(vec![7], vec![8], 100).unwrap();
        let p = pad(&[&a, &b], DType::F32, &Device::Cpu)?;
        assert_eq!(
            p.tokens.to_vec2::<u32>()?,
            vec![vec![1, 2, 3, 4, 5], vec![7, 8, 0, 0, 0]]
        );
        assert_eq!(
            p.mask.to_vec2::<f32>()?,
            vec![vec![0., 0., 1., 1.], vec![1., 0., 0., 0.]]
        );
        assert_eq!(p.response_tokens, 3);
        Ok(())
    }

    #[test]
    fn truncation_keeps_the_prompt_and_cuts_the_response() {
        let s = Sequence::new(vec![1, 2], vec![3, 4, 5], 4).unwrap();
        assert_eq!(s.tokens, vec![1, 2, 3, 4]);
        assert!(Sequence::new(vec![1, 2, 3, 4], vec![5], 4).is_none());
    }

    #[test]
    fn batches_are_seeded_and_cover_every_item_once() {
        let lengths: Vec<usize> = (0..50).map(|i| (i * 37) % 23).collect();
        let a = bucketed_batches(&lengths, 4, 1, 0);
        assert_eq!(a, bucketed_batches(&lengths, 4, 1, 0));
        assert_ne!(a, bucketed_batches(&lengths, 4, 1, 1));
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }
}
