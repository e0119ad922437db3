//! Keeping llama.cpp's CPU flash-attention kernel on one algorithm, so that a sequence's
//! output does not depend on what else is in its batch.
//!
//! The kernel (ggml-cpu `ops.cpp`, `ggml_compute_forward_flash_attn_ext_f16`) picks one of
//! three algorithms from the shape of each micro-batch, and they sum in different orders:
//! - a tiled path when a sequence brings 64 or more query tokens (a prompt piece);
//! - a KV-split path when the micro-batch holds one sequence bringing one token and the
//!   attended cells number 512 or more (llama.cpp pads them to a multiple of 256, so a lone
//!   sequence past position 255 in a cache of 512 cells per sequence or more);
//! - otherwise a plain loop, one query row at a time over the cells in index order, skipping
//!   masked cells: a row's result then depends on its own cells only.
//!
//! The scheduler keeps every micro-batch on the plain loop: prompts are fed in pieces of at
//! most [`PROMPT_PIECE`] tokens, and a sequence that would be computed alone with one token
//! gets a throw-away token of the next sequence id beside it (llama.cpp puts consecutive
//! sequence ids with one token each into one micro-batch), whose cell is removed right after
//! the step. The context holds one stream more than the slots, so that the last slot has a
//! next sequence id too. Without flash attention none of this is needed (the plain attention's
//! products are per row already) and none of it is done.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use crate::error::{BackendError, Result};

/// The most prompt tokens one sequence brings to a step: the kernel's tiled path starts at 64
/// query rows (`ggml_fa_tile_config::Q`).
pub(super) const PROMPT_PIECE: usize = 63;

/// Throw-away tokens put into the batch about to be decoded, removed after it.
#[derive(Default)]
pub(super) struct Ballast {
    /// (sequence id, position) of each throw-away token in the current batch.
    placed: Vec<(i32, i32)>,
}

impl Ballast {
    /// Adds a throw-away token of sequence `s + 1` for every lone sequence `s`, at the
    /// position after that sequence's last cell (llama.cpp wants a sequence's positions
    /// consecutive). Any token does (id 0); it asks for no logits, so the batch's other
    /// outputs keep their indices.
    pub fn add(
        &mut self,
        context: &LlamaContext,
        batch: &mut LlamaBatch,
        lone: &[usize],
    ) -> Result<()> {
        for &s in lone {
            let seq = s as i32 + 1;
            let pos = context.kv_cache_seq_pos_max(seq) + 1;
            batch
                .add(LlamaToken(0), pos, &[seq], false)
                .map_err(|e| BackendError::Engine(e.to_string()))?;
            self.placed.push((seq, pos));
        }
        Ok(())
    }

    /// Removes the cells the last step's throw-away tokens took. llama.cpp moves the stream's
    /// search start back to the freed cell, so the sequence's next token takes the cell it
    /// would have taken without them: cell indices, and with them the order of the sums, stay
    /// as when the sequence runs alone.
    pub fn remove(&mut self, context: &mut LlamaContext) -> Result<()> {
        for (seq, pos) in self.placed.drain(..) {
            context
                .clear_kv_cache_seq(Some(seq as u32), Some(pos as u32), Some(pos as u32 + 1))
                .map_err(|e| BackendError::Engine(e.to_string()))?;
        }
        Ok(())
    }
}

/// The sequences of a step that llama.cpp would compute alone with one token: those bringing
/// one token whose neighbouring ids bring none. `tokens` holds (sequence id, tokens brought)
/// sorted by id.
pub(super) fn lone_sequences(tokens: &[(usize, usize)]) -> Vec<usize> {
    let brings = |id: usize| tokens.binary_search_by_key(&id, |&(s, _)| s).is_ok();
    tokens
        .iter()
        .filter(|&&(s, n)| n == 1 && !brings(s + 1) && (s == 0 || !brings(s - 1)))
        .map(|&(s, _)| s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::lone_sequences;

    #[test]
    fn a_sequence_is_lone_when_no_neighbouring_id_brings_a_token() {
        assert_eq!(lone_sequences(&[(0, 1)]), vec![0]);
        assert_eq!(
            lone_sequences(&[(0, 1), (1, 1), (3, 1), (5, 1), (6, 1)]),
            vec![3]
        );
        assert_eq!(lone_sequences(&[(2, 1), (4, 1)]), vec![2, 4]);
        // A prompt piece of several tokens takes the plain loop alone.
        assert_eq!(lone_sequences(&[(4, 20)]), Vec::<usize>::new());
        assert_eq!(lone_sequences(&[]), Vec::<usize>::new());
    }
}
