//! Continuous batching over llama.cpp sequences.
//!
//! Every step builds one `llama_batch` holding the next token of every running sequence plus
//! a chunk of at most one waiting prompt. A prompt is decoded once (for every waiting request
//! that has the same prompt), into the first of the
//! sequences that sample from it, and its KV cells are then copied to the others
//! (`llama_memory_seq_cp`); each sequence has its own seeded sampler (see `sampler`); a finished
//! sequence frees its slot and its KV cells at once, and the next waiting sample takes the
//! slot in the same step.

use std::collections::VecDeque;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::LlamaCppConfig;
use super::sampler::Sampler;
use crate::error::{BackendError, Result};
use crate::request::{Completion, FinishReason, Request};

/// A sequence that is generating.
struct Running {
    request: usize,
    index: u32,
    seed: u64,
    sampler: Sampler,
    /// Position the next fed token takes (the first generated token follows the prompt).
    pos: i32,
    /// Token to feed in the next batch.
    next: LlamaToken,
    /// Index of this sequence's logits in the last batch.
    logits_at: i32,
    bytes: Vec<u8>,
    generated: u32,
    limit: u32,
}

/// A prompt being decoded for a group of sequences.
struct Prefill {
    /// The request whose prompt tokens are decoded (all members' prompts are equal).
    request: usize,
    /// (slot, request, sample index) of the sequences that share the prompt: the samples
    /// of one request and of any other waiting request with the same prompt (a problem's
    /// greedy request and its sampled one).
    members: Vec<(usize, usize, u32)>,
    fed: usize,
}

/// Takes waiting samples into free slots: the front request's, then those of every waiting
/// request with the same prompt tokens, so that the prompt is decoded once for all.
fn admit(
    waiting: &mut VecDeque<(usize, Vec<u32>)>,
    free: &[usize],
    prompts: &[Vec<LlamaToken>],
) -> Option<Prefill> {
    let (front, _) = waiting.front()?;
    let front = *front;
    let mut free = free.iter().copied();
    let mut members = Vec::new();
    for (request, indices) in waiting.iter_mut() {
        if prompts[*request] != prompts[front] {
            continue;
        }
        while !indices.is_empty() {
            let Some(slot) = free.next() else { break };
            members.push((slot, *request, indices.remove(0)));
        }
    }
    waiting.retain(|(_, indices)| !indices.is_empty());
    (!members.is_empty()).then_some(Prefill {
        request: front,
        members,
        fed: 0,
    })
}

/// Where the first stop string starts in `text`, if any.
fn stop_at(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

pub(super) fn run(
    model: &LlamaModel,
    context: &mut LlamaContext,
    config: &LlamaCppConfig,
    requests: &[Request],
    prompts: &[Vec<LlamaToken>],
    on_completion: &mut dyn FnMut(Completion) -> Result<()>,
) -> Result<()> {
    let parallel = config.parallel.max(1) as usize;
    let batch_size = config.batch_size.max(parallel as u32 + 1) as usize;
    let per_sequence = config.context_per_sequence as usize;
    for (request, prompt) in prompts.iter().enumerate() {
        if prompt.len() >= per_sequence {
            return Err(BackendError::PromptTooLong {
                request,
                tokens: prompt.len(),
                context: per_sequence,
            });
        }
    }
    let vocab = model.vocab();
    let mut waiting: VecDeque<(usize, Vec<u32>)> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.indices.is_empty())
        .map(|(i, r)| (i, r.indices.clone()))
        .collect();
    let mut slots: Vec<Option<Running>> = (0..parallel).map(|_| None).collect();
    let mut reserved = vec![false; parallel];
    let mut prefill: Option<Prefill> = None;
    let mut batch = LlamaBatch::new(batch_size, parallel as i32);

    loop {
        // Admit waiting samples into free slots.
        if prefill.is_none() {
            let free: Vec<usize> = (0..parallel)
                .filter(|&s| slots[s].is_none() && !reserved[s])
                .collect();
            prefill = admit(&mut waiting, &free, prompts);
            for (slot, _, _) in prefill.iter().flat_map(|p| &p.members) {
                reserved[*slot] = true;
            }
        }

        batch.clear();
        for (slot, running) in slots.iter_mut().enumerate() {
            if let Some(r) = running {
                r.logits_at = batch.n_tokens();
                batch
                    .add(r.next, r.pos, &[slot as i32], true)
                    .map_err(|e| BackendError::Engine(e.to_string()))?;
                r.pos += 1;
            }
        }
        let mut prefill_logits = None;
        if let Some(p) = &mut prefill {
            let prompt = &prompts[p.request];
            let room = batch_size - batch.n_tokens() as usize;
            let end = (p.fed + room).min(prompt.len());
            let seqs = [p.members[0].0 as i32];
            for (pos, token) in prompt.iter().enumerate().take(end).skip(p.fed) {
                let last = pos + 1 == prompt.len();
                if last {
                    prefill_logits = Some(batch.n_tokens());
                }
                batch
                    .add(*token, pos as i32, &seqs, last)
                    .map_err(|e| BackendError::Engine(e.to_string()))?;
            }
            p.fed = end;
        }
        if batch.n_tokens() == 0 {
            break;
        }
        context
            .decode(&mut batch)
            .map_err(|e| BackendError::Engine(format!("decode: {e}")))?;

        // A fully decoded prompt: its sequences draw their first tokens from its logits.
        if let Some(at) = prefill_logits
            && let Some(p) = prefill.take()
        {
            let prompt_len = prompts[p.request].len();
            let source = p.members[0].0 as i32;
            for &(slot, _, _) in &p.members[1..] {
                context
                    .copy_kv_cache_seq(source, slot as i32, None, None)
                    .map_err(|e| BackendError::Engine(e.to_string()))?;
            }
            for (slot, request_index, index) in p.members {
                reserved[slot] = false;
                let request = &requests[request_index];
                let seed = request.seed_of(index);
                let limit = request
                    .sampling
                    .max_tokens
                    .min((per_sequence - prompt_len) as u32);
                slots[slot] = Some(Running {
                    request: request_index,
                    index,
                    seed,
                    sampler: Sampler::new(&request.sampling, seed),
                    pos: prompt_len as i32,
                    next: LlamaToken(0),
                    logits_at: at,
                    bytes: Vec::new(),
                    generated: 0,
                    limit,
                });
            }
        }

        for (slot, running) in slots.iter_mut().enumerate() {
            let Some(r) = running else { continue };
            let token = LlamaToken(r.sampler.sample(context.get_logits_ith(r.logits_at)) as i32);
            let request = &requests[r.request];
            let mut finish = None;
            if vocab.is_eog(token) && !request.sampling.ignore_eos {
                finish = Some(FinishReason::Stop);
            } else {
                r.bytes
                    .extend_from_slice(&vocab.token_to_piece(token, false, None));
                r.generated += 1;
                let text = String::from_utf8_lossy(&r.bytes);
                if let Some(cut) = stop_at(&text, &request.sampling.stop) {
                    let kept = text[..cut].to_string();
                    r.bytes = kept.into_bytes();
                    finish = Some(FinishReason::Stop);
                } else if r.generated >= r.limit {
                    finish = Some(FinishReason::Length);
                }
            }
            match finish {
                None => r.next = token,
                Some(reason) => {
                    let done = running.take().expect("running slot");
                    context
                        .clear_kv_cache_seq(Some(slot as u32), None, None)
                        .map_err(|e| BackendError::Engine(e.to_string()))?;
                    on_completion(Completion {
                        request: done.request,
                        index: done.index,
                        seed: done.seed,
                        text: String::from_utf8_lossy(&done.bytes).into_owned(),
                        finish_reason: reason,
                        prompt_tokens: prompts[done.request].len() as u32,
                        completion_tokens: Some(done.generated),
                    })?;
                }
            }
        }
    }
    Ok(())
}
