//! Continuous batching over llama.cpp sequences, each in its own KV stream (a slot).
//!
//! Every step decodes one `llama_batch` holding the next token of every running sequence, then
//! one holding the next chunk of the prompt being decoded. Each distinct prompt is decoded once: its KV cells stay
//! in the slot that decoded it, and the logits of its last token are kept, so every other
//! sample of that prompt (the samples of a request, the greedy request of the same problem,
//! samples that get a slot only later) starts by copying those cells
//! (`llama_memory_seq_cp`, a memory copy) and drawing its first token from the kept logits. A
//! finished sequence leaves its prompt's cells in its slot: the next sample of the same prompt
//! takes the slot after dropping the old response's cells, with no copy at all.
//!
//! Why it matters: on the loop's workload (about 110-token prompts, greedy + 8 samples, short
//! answers) decoding a prompt costs as much as 40 decoding steps, and the old schedule, which
//! decoded a prompt again for every group of samples that got slots at a different time,
//! spent more tokens on prompts than on responses (see the README's profile).
//!
//! Batch invariance: a sequence's cells sit at the same cell indices whether it was decoded
//! alone, copied from another stream or left in a reused slot (prompt at 0..L, response from
//! L on), so attention sums in the same order; and ggml is built without llamafile's sgemm
//! (`.cargo/config.toml`), so every weight product is the same per-row dot product whether a
//! micro-batch holds one row or many. (llama.cpp splits a batch into micro-batches of
//! consecutive sequence ids, so a running sequence whose neighbouring slots are idle is
//! computed alone; with sgemm on, its tokens then came out different, and a killed and
//! resumed loop drew other samples.) Under flash attention, prompts are fed in pieces under 64
//! tokens and a lone sequence gets a throw-away neighbour, which keeps llama.cpp's kernel on
//! its one per-row algorithm (see [`super::ballast`]). Output does not depend on what else is
//! in the batch.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::CallSize;
use super::ballast::{self, Ballast};
use super::sampler::Sampler;
use crate::error::{BackendError, Result};
use crate::request::{Completion, FinishReason, Request};

type OnCompletion<'f> = &'f mut dyn FnMut(Completion) -> Result<()>;

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
    /// Index of this sequence's logits in the batch just decoded.
    logits_at: Option<i32>,
    bytes: Vec<u8>,
    generated: u32,
    limit: u32,
}

/// What a slot is doing.
enum State {
    Free,
    /// Receives a prompt being decoded (or its copy when the decoding ends).
    Prefill,
    Running(Box<Running>),
}

struct Slot {
    state: State,
    /// The prompt whose KV cells fill this slot's positions 0..len (with maybe an old or
    /// growing response after them).
    holds: Option<usize>,
}

/// A prompt being decoded for a group of samples.
struct Prefill {
    prompt: usize,
    /// (slot, request, sample index); the prompt is decoded into the first member's slot.
    members: Vec<(usize, usize, u32)>,
    fed: usize,
    /// Where the last prompt token's logits are in the batch just decoded.
    logits_at: Option<i32>,
}

/// Where the work of one `generate` call went (also logged at its end: target
/// `backends::llamacpp::scheduler`, level info).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodeProfile {
    /// `llama_decode` calls.
    pub steps: u64,
    /// Prompt tokens decoded (each distinct prompt once, unless its cells were lost).
    pub prompt_tokens: u64,
    /// Generated tokens fed back.
    pub generated_tokens: u64,
    /// `llama_decode` calls that carried running sequences' tokens (`generated_tokens` over
    /// this is the mean number of sequences generating together).
    pub running_steps: u64,
    /// Micro-batches the running steps were split into: llama.cpp computes each run of
    /// consecutive running slots as a micro-batch of its own (one pass over the weights each),
    /// so idle slots between running ones cost whole passes.
    pub running_micro_batches: u64,
    /// Prompts decoded.
    pub prefills: u64,
    /// Prompts copied from one sequence's cells to another's.
    pub copies: u64,
    /// Samples that started in a slot already holding their prompt (no copy).
    pub reuses: u64,
    /// Prompt tokens not decoded because another prompt's cells held them (a shared prefix).
    pub shared_prefix_tokens: u64,
    /// Running sequences moved down into a free slot to keep the running slots consecutive
    /// (see [`Scheduler::compact`]).
    pub moves: u64,
    /// Throw-away tokens decoded beside a lone sequence to keep flash attention
    /// batch-invariant (`ballast`).
    pub ballast_tokens: u64,
    /// Seconds inside `llama_decode` (the forward passes and the KV copies).
    pub decode_s: f64,
    /// The part of `decode_s` spent on prompt pieces, with the KV copies llama.cpp applies
    /// at their start (the rest went to running steps and their copies): with
    /// `prompt_tokens` and `generated_tokens` it gives the cost of a decoded token of each
    /// kind, which tells a slow call's own work (many prompts for few answer tokens) from a
    /// slow engine.
    pub prompt_s: f64,
    /// Seconds of the whole call.
    pub total_s: f64,
}

pub(super) fn run<'m>(
    model: &'m LlamaModel,
    context: &mut LlamaContext<'m>,
    size: CallSize,
    requests: &[Request],
    prompts: &[Vec<LlamaToken>],
    on_completion: OnCompletion,
) -> Result<DecodeProfile> {
    let per_sequence = size.cells_per_sequence as usize;
    for (request, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() || prompt.len() >= per_sequence {
            return Err(BackendError::PromptTooLong {
                request,
                tokens: prompt.len(),
                context: per_sequence,
            });
        }
    }
    let started = Instant::now();
    let mut scheduler = Scheduler::new(model, context, size, requests, prompts);
    let mut batch = LlamaBatch::new(scheduler.batch_size, 1);
    loop {
        scheduler.admit(on_completion)?;
        scheduler.compact()?;
        let mut decoded = false;
        if scheduler.fill_running(&mut batch)? {
            scheduler.decode(&mut batch, Step::Running)?;
            scheduler.sample(on_completion)?;
            decoded = true;
        }
        // A prompt is decoded whole between two running steps, in one or more pieces (several
        // under flash attention: see `ballast`), so that prompts start at the same pace
        // whatever the piece size.
        while scheduler.fill_prompt(&mut batch)? {
            scheduler.decode(&mut batch, Step::Prompt)?;
            scheduler.finish_prefill(on_completion)?;
            decoded = true;
        }
        if !decoded {
            break;
        }
    }
    scheduler.profile.total_s = started.elapsed().as_secs_f64();
    scheduler.log_profile();
    Ok(scheduler.profile)
}

/// What a `llama_decode` call carries: running sequences' next tokens, or a prompt piece.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Running,
    Prompt,
}

struct Scheduler<'a, 'm> {
    model: &'m LlamaModel,
    context: &'a mut LlamaContext<'m>,
    requests: &'a [Request],
    prompts: &'a [Vec<LlamaToken>],
    batch_size: usize,
    per_sequence: usize,
    /// Prompt id of each request (requests with equal prompt tokens share one).
    prompt_of: Vec<usize>,
    /// A request of each prompt id.
    request_of: Vec<usize>,
    /// Samples not yet started, per prompt id.
    remaining: Vec<usize>,
    /// (request, sample indices) not yet started, in request order.
    waiting: VecDeque<(usize, VecDeque<u32>)>,
    slots: Vec<Slot>,
    /// The prompt being decoded: one at a time (see [`Scheduler::admit`]).
    prefill: Option<Prefill>,
    /// Logits of each decoded prompt's last token, kept while samples of it wait.
    first_logits: HashMap<usize, Vec<f32>>,
    /// Whether flash attention may run: micro-batches are then kept on the kernel's
    /// batch-invariant path (see [`ballast`]).
    flash_attention: bool,
    ballast: Ballast,
    profile: DecodeProfile,
}

impl<'a, 'm> Scheduler<'a, 'm> {
    fn new(
        model: &'m LlamaModel,
        context: &'a mut LlamaContext<'m>,
        size: CallSize,
        requests: &'a [Request],
        prompts: &'a [Vec<LlamaToken>],
    ) -> Self {
        let parallel = size.slots as usize;
        let mut ids: HashMap<&[LlamaToken], usize> = HashMap::new();
        let prompt_of: Vec<usize> = prompts
            .iter()
            .map(|p| {
                let next = ids.len();
                *ids.entry(p.as_slice()).or_insert(next)
            })
            .collect();
        let mut request_of = vec![0; ids.len()];
        let mut remaining = vec![0; ids.len()];
        for (request, &prompt) in prompt_of.iter().enumerate() {
            request_of[prompt] = request;
        }
        for (request, r) in requests.iter().enumerate() {
            remaining[prompt_of[request]] += r.indices.len();
        }
        Scheduler {
            model,
            context,
            requests,
            prompts,
            // `LlamaCpp::sized_for` made it hold a token per slot; it is the context's n_batch.
            batch_size: size.batch_size as usize,
            per_sequence: size.cells_per_sequence as usize,
            prompt_of,
            request_of,
            remaining,
            waiting: requests
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.indices.is_empty())
                .map(|(i, r)| (i, r.indices.iter().copied().collect()))
                .collect(),
            slots: (0..parallel)
                .map(|_| Slot {
                    state: State::Free,
                    holds: None,
                })
                .collect(),
            prefill: None,
            first_logits: HashMap::new(),
            flash_attention: size.flash_attention,
            ballast: Ballast::default(),
            profile: DecodeProfile::default(),
        }
    }

    /// Starts waiting samples in free slots, in request order, serving every waiting sample
    /// of the front prompt before the next prompt: at once from a decoded prompt, by joining
    /// the prompt being decoded, or by starting to decode it.
    ///
    /// One prompt is decoded at a time: with several prompts in one batch (llama.cpp then
    /// splits them into equal-length chunks per sequence) the greedy test
    /// `greedy_is_the_same_alone_and_in_a_full_batch` failed, a response parting from the
    /// same prompt's response decoded alone.
    fn admit(&mut self, on_completion: OnCompletion) -> Result<()> {
        while let Some(&(front, _)) = self.waiting.front() {
            let prompt = self.prompt_of[front];
            let decoding = self.prefill.as_ref().map(|p| p.prompt);
            let ready = self.is_ready(prompt);
            if decoding.is_some_and(|p| p != prompt) && !ready {
                break;
            }
            let Some(slot) = self.free_slot(prompt) else {
                break;
            };
            let (request, index) = self.take(prompt);
            if let Some(p) = self.prefill.as_mut().filter(|p| p.prompt == prompt) {
                self.slots[slot].state = State::Prefill;
                p.members.push((slot, request, index));
            } else if ready {
                self.place(slot, prompt)?;
                self.start(slot, request, index, on_completion)?;
            } else {
                self.start_prefill(slot, prompt, (request, index))?;
            }
        }
        Ok(())
    }

    /// Starts decoding a prompt into `slot`. The longest prefix of it that some slot's cells
    /// hold (another prompt's: the system prompt and the chat template's opening are shared
    /// by every problem of a task) is copied rather than decoded; the first token after it is
    /// decoded at the position and cell it takes when the prompt is decoded whole, so the
    /// cells are laid out as when the prompt runs alone.
    fn start_prefill(&mut self, slot: usize, prompt: usize, sample: (usize, u32)) -> Result<()> {
        let tokens = &self.prompts[sample.0];
        let source = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !matches!(s.state, State::Prefill))
            .filter_map(|(i, s)| Some((i, shared_prefix(tokens, self.tokens_of(s.holds?)))))
            .max_by_key(|&(i, shared)| (shared, i == slot))
            // The last prompt token is always decoded: its logits give the first response token.
            .map(|(i, shared)| (i, shared.min(tokens.len() - 1)))
            .filter(|&(_, shared)| shared >= MIN_SHARED_PREFIX);
        let fed = source.map_or(0, |(_, shared)| shared);
        match source {
            Some((source, shared)) => {
                if source != slot {
                    self.copy(source, slot)?;
                }
                self.context
                    .clear_kv_cache_seq(Some(slot as u32), Some(shared as u32), None)
                    .map_err(|e| BackendError::Engine(e.to_string()))?;
                self.profile.shared_prefix_tokens += shared as u64;
            }
            None if self.slots[slot].holds.is_some() => self.clear(slot)?,
            None => {}
        }
        self.slots[slot].holds = None;
        self.slots[slot].state = State::Prefill;
        self.profile.prefills += 1;
        self.prefill = Some(Prefill {
            prompt,
            members: vec![(slot, sample.0, sample.1)],
            fed,
            logits_at: None,
        });
        Ok(())
    }

    /// A prompt id's tokens.
    fn tokens_of(&self, prompt: usize) -> &'a [LlamaToken] {
        &self.prompts[self.request_of[prompt]]
    }

    /// Whether a prompt's cells sit complete in some slot and its first logits are kept.
    fn is_ready(&self, prompt: usize) -> bool {
        self.first_logits.contains_key(&prompt) && self.holder(prompt).is_some()
    }

    fn holder(&self, prompt: usize) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.holds == Some(prompt) && !matches!(s.state, State::Prefill))
    }

    /// A free slot for a sample of `prompt`: one that holds it, else an empty one, else one
    /// whose prompt no sample waits for, else any.
    fn free_slot(&self, prompt: usize) -> Option<usize> {
        let free = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s.state, State::Free))
        };
        // Among slots that cost the same (empty, or holding a prompt nobody waits for), the
        // lowest: running sequences then sit in consecutive slots (see `compact`).
        let rank = |holds: Option<usize>| match holds {
            Some(p) if p == prompt => 0,
            None => 1,
            Some(p) if self.remaining[p] == 0 => 1,
            Some(_) => 2,
        };
        free().min_by_key(|(_, s)| rank(s.holds)).map(|(i, _)| i)
    }

    /// The next waiting sample of `prompt`, in request order.
    fn take(&mut self, prompt: usize) -> (usize, u32) {
        let at = self
            .waiting
            .iter()
            .position(|(r, _)| self.prompt_of[*r] == prompt)
            .expect("a waiting sample of the prompt");
        let (request, indices) = &mut self.waiting[at];
        let request = *request;
        let index = indices.pop_front().expect("waiting samples");
        if indices.is_empty() {
            self.waiting.remove(at);
        }
        self.remaining[prompt] -= 1;
        (request, index)
    }

    /// Puts a decoded prompt's cells into `slot`: drops the old response if the slot holds
    /// the prompt, else copies the holder's stream and drops what follows the prompt.
    fn place(&mut self, slot: usize, prompt: usize) -> Result<()> {
        let len = self.tokens_of(prompt).len() as u32;
        if self.slots[slot].holds == Some(prompt) {
            self.profile.reuses += 1;
        } else {
            let source = self.holder(prompt).expect("a ready prompt has a holder");
            self.copy(source, slot)?;
        }
        self.slots[slot].holds = Some(prompt);
        self.context
            .clear_kv_cache_seq(Some(slot as u32), Some(len), None)
            .map_err(|e| BackendError::Engine(e.to_string()))?;
        Ok(())
    }

    /// Copies a prompt's cells (the whole stream) from `source` into `slot`.
    fn copy(&mut self, source: usize, slot: usize) -> Result<()> {
        self.profile.copies += 1;
        self.copy_stream(source, slot)
    }

    fn copy_stream(&mut self, source: usize, slot: usize) -> Result<()> {
        self.context
            .copy_kv_cache_seq(source as i32, slot as i32, None, None)
            .map_err(|e| BackendError::Engine(e.to_string()))
    }

    fn clear(&mut self, slot: usize) -> Result<()> {
        self.context
            .clear_kv_cache_seq(Some(slot as u32), None, None)
            .map(|_| ())
            .map_err(|e| BackendError::Engine(e.to_string()))
    }

    /// Starts a sample in a slot that holds its prompt: its first token is drawn from the
    /// prompt's kept logits.
    fn start(
        &mut self,
        slot: usize,
        request: usize,
        index: u32,
        on_completion: OnCompletion,
    ) -> Result<()> {
        let r = &self.requests[request];
        let prompt_len = self.prompts[request].len();
        let seed = r.seed_of(index);
        let mut running = Box::new(Running {
            request,
            index,
            seed,
            sampler: Sampler::new(&r.sampling, seed),
            pos: prompt_len as i32,
            next: LlamaToken(0),
            logits_at: None,
            bytes: Vec::new(),
            generated: 0,
            limit: r
                .sampling
                .max_tokens
                .min((self.per_sequence - prompt_len) as u32),
        });
        let logits = &self.first_logits[&self.prompt_of[request]];
        let token = LlamaToken(running.sampler.sample(logits) as i32);
        self.slots[slot].state = State::Running(running);
        self.advance(slot, token, on_completion)
    }

    /// Moves running sequences down into free slots below them until the running slots are
    /// consecutive. llama.cpp computes each run of consecutive running sequence ids as a
    /// micro-batch of its own, one pass over the weights each; on the loop's real call
    /// (responses that stop at different lengths) the slots of finished sequences split a
    /// step into 8.6 micro-batches on average, and a step of 67 sequences cost more than one
    /// of 144 in a single micro-batch. A move is a stream copy (`llama_memory_seq_cp`, the
    /// cells keep their indices, so the sequence's arithmetic is unchanged: batch
    /// invariance holds) of a few MB, far cheaper than a pass over the weights.
    ///
    /// A free slot is only overwritten when its prompt's cells are not needed there: it
    /// holds none, no sample of it waits, or another slot holds it too.
    fn compact(&mut self) -> Result<()> {
        loop {
            let Some(top) = self
                .slots
                .iter()
                .rposition(|s| matches!(s.state, State::Running(_)))
            else {
                return Ok(());
            };
            let Some(hole) = (0..top).find(|&i| self.expendable(i)) else {
                return Ok(());
            };
            self.copy_stream(top, hole)?;
            self.profile.moves += 1;
            let state = std::mem::replace(&mut self.slots[top].state, State::Free);
            self.slots[hole].state = state;
            self.slots[hole].holds = self.slots[top].holds;
        }
    }

    /// Whether a free slot's cells may be overwritten (see [`Scheduler::compact`]).
    fn expendable(&self, slot: usize) -> bool {
        let s = &self.slots[slot];
        if !matches!(s.state, State::Free) {
            return false;
        }
        match s.holds {
            None => true,
            Some(p) if self.remaining[p] == 0 => true,
            Some(p) => self.slots.iter().enumerate().any(|(i, other)| {
                i != slot && other.holds == Some(p) && !matches!(other.state, State::Prefill)
            }),
        }
    }

    /// Puts every running sequence's next token into the batch; false if none runs.
    fn fill_running(&mut self, batch: &mut LlamaBatch) -> Result<bool> {
        batch.clear();
        let mut previous_ran = false;
        // (slot, tokens brought) of every running sequence, for the throw-away tokens.
        let mut running = Vec::new();
        for (slot, s) in self.slots.iter_mut().enumerate() {
            let runs = matches!(s.state, State::Running(_));
            self.profile.running_micro_batches += u64::from(runs && !previous_ran);
            previous_ran = runs;
            if let State::Running(r) = &mut s.state {
                r.logits_at = Some(batch.n_tokens());
                batch
                    .add(r.next, r.pos, &[slot as i32], true)
                    .map_err(|e| BackendError::Engine(e.to_string()))?;
                r.pos += 1;
                self.profile.generated_tokens += 1;
                running.push((slot, 1));
            }
        }
        self.profile.running_steps += u64::from(batch.n_tokens() > 0);
        if self.flash_attention {
            self.add_ballast(batch, &running)?;
        }
        Ok(batch.n_tokens() > 0)
    }

    /// Puts a throw-away token beside every sequence of the batch that llama.cpp would
    /// compute alone with one token (see [`ballast`]).
    fn add_ballast(&mut self, batch: &mut LlamaBatch, tokens: &[(usize, usize)]) -> Result<()> {
        let lone = ballast::lone_sequences(tokens);
        self.profile.ballast_tokens += lone.len() as u64;
        self.ballast.add(self.context, batch, &lone)
    }

    /// Puts the next chunk of the prompt being decoded into the batch, alone; false if no
    /// prompt is being decoded.
    ///
    /// A prompt is decoded in a batch of its own, never beside the running sequences' tokens.
    /// This was needed while ggml used llamafile's sgemm (several rows of a sequence summed in
    /// another order than one row: a prompt token beside running tokens came out different
    /// and greedy responses parted). With sgemm off (`.cargo/config.toml`), every row is the
    /// same dot product at any batch size; the separation stays, costing nothing measurable on
    /// this CPU path, until a mixed batch is measured to be faster and invariant.
    fn fill_prompt(&mut self, batch: &mut LlamaBatch) -> Result<bool> {
        batch.clear();
        let Some(p) = &mut self.prefill else {
            return Ok(false);
        };
        let prompt = &self.prompts[p.members[0].1];
        let piece = if self.flash_attention {
            ballast::PROMPT_PIECE
        } else {
            self.batch_size
        };
        let end = (p.fed + piece).min(prompt.len());
        let slot = p.members[0].0;
        let seq = [slot as i32];
        for (pos, token) in prompt.iter().enumerate().take(end).skip(p.fed) {
            let last = pos + 1 == prompt.len();
            if last {
                p.logits_at = Some(batch.n_tokens());
            }
            batch
                .add(*token, pos as i32, &seq, last)
                .map_err(|e| BackendError::Engine(e.to_string()))?;
        }
        let fed = end - p.fed;
        self.profile.prompt_tokens += fed as u64;
        p.fed = end;
        if self.flash_attention {
            self.add_ballast(batch, &[(slot, fed)])?;
        }
        Ok(batch.n_tokens() > 0)
    }

    fn decode(&mut self, batch: &mut LlamaBatch, step: Step) -> Result<()> {
        let t = Instant::now();
        self.profile.steps += 1;
        self.context
            .decode(batch)
            .map_err(|e| BackendError::Engine(format!("decode: {e}")))?;
        self.ballast.remove(self.context)?;
        let seconds = t.elapsed().as_secs_f64();
        self.profile.decode_s += seconds;
        if step == Step::Prompt {
            self.profile.prompt_s += seconds;
        }
        Ok(())
    }

    /// Draws the next token of every sequence decoded in this step.
    fn sample(&mut self, on_completion: OnCompletion) -> Result<()> {
        for slot in 0..self.slots.len() {
            let State::Running(r) = &mut self.slots[slot].state else {
                continue;
            };
            let Some(at) = r.logits_at.take() else {
                continue;
            };
            let token = LlamaToken(r.sampler.sample(self.context.get_logits_ith(at)) as i32);
            self.advance(slot, token, on_completion)?;
        }
        Ok(())
    }

    /// A prompt whose last token was decoded in this step: its logits are kept, its cells
    /// copied to the group's other slots, and the group's samples start.
    fn finish_prefill(&mut self, on_completion: OnCompletion) -> Result<()> {
        let finished = self.prefill.as_ref().and_then(|p| p.logits_at);
        if let Some(at) = finished {
            let p = self.prefill.take().expect("a prompt being decoded");
            let logits = self.context.get_logits_ith(at).to_vec();
            self.first_logits.insert(p.prompt, logits);
            let source = p.members[0].0;
            self.slots[source].holds = Some(p.prompt);
            for &(slot, _, _) in &p.members[1..] {
                self.copy(source, slot)?;
                self.slots[slot].holds = Some(p.prompt);
            }
            for (slot, request, index) in p.members {
                self.start(slot, request, index, on_completion)?;
            }
        }
        let remaining = &self.remaining;
        self.first_logits.retain(|prompt, _| remaining[*prompt] > 0);
        Ok(())
    }

    /// Appends a drawn token to a running sequence, or ends it (end of generation, a stop
    /// string, the token limit); an ended sequence frees its slot but leaves its cells.
    fn advance(
        &mut self,
        slot: usize,
        token: LlamaToken,
        on_completion: OnCompletion,
    ) -> Result<()> {
        let State::Running(r) = &mut self.slots[slot].state else {
            return Ok(());
        };
        let sampling = &self.requests[r.request].sampling;
        let vocab = self.model.vocab();
        let mut finish = None;
        if vocab.is_eog(token) && !sampling.ignore_eos {
            finish = Some(FinishReason::Stop);
        } else {
            r.bytes
                .extend_from_slice(&vocab.token_to_piece(token, false, None));
            r.generated += 1;
            let text = String::from_utf8_lossy(&r.bytes);
            if let Some(cut) = stop_at(&text, &sampling.stop) {
                r.bytes = text[..cut].as_bytes().to_vec();
                finish = Some(FinishReason::Stop);
            } else if r.generated >= r.limit {
                finish = Some(FinishReason::Length);
            }
        }
        let Some(reason) = finish else {
            r.next = token;
            return Ok(());
        };
        let State::Running(done) = std::mem::replace(&mut self.slots[slot].state, State::Free)
        else {
            unreachable!("the slot was running")
        };
        on_completion(Completion {
            request: done.request,
            index: done.index,
            seed: done.seed,
            text: String::from_utf8_lossy(&done.bytes).into_owned(),
            finish_reason: reason,
            prompt_tokens: self.prompts[done.request].len() as u32,
            completion_tokens: Some(done.generated),
        })
    }

    fn log_profile(&self) {
        let p = &self.profile;
        tracing::info!(
            steps = p.steps,
            prompt_tokens = p.prompt_tokens,
            generated_tokens = p.generated_tokens,
            mean_running = p.generated_tokens as f64 / p.running_steps.max(1) as f64,
            running_micro_batches = p.running_micro_batches,
            prefills = p.prefills,
            kv_copies = p.copies,
            slot_reuses = p.reuses,
            shared_prefix_tokens = p.shared_prefix_tokens,
            moves = p.moves,
            ballast_tokens = p.ballast_tokens,
            decode_s = p.decode_s,
            prompt_s = p.prompt_s,
            other_s = p.total_s - p.decode_s,
            "llamacpp profile"
        );
    }
}

/// Shorter shared prefixes are decoded: a whole-stream copy costs about as much as decoding a
/// few tokens.
const MIN_SHARED_PREFIX: usize = 8;

/// How many leading tokens two prompts share.
fn shared_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Where the first stop string starts in `text`, if any.
fn stop_at(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}
