//! The training loops: SFT (cross-entropy on response tokens) and DPO (sigmoid preference
//! loss against a reference model's log-probabilities), with gradient accumulation, global
//! norm clipping, warmup + cosine/constant schedule and per-step logs.

use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{D, Tensor};
use serde::Serialize;

use crate::batch::{Sequence, bucketed_batches, pad};
use crate::model::Llama;
use crate::ops::log_sigmoid;
use crate::optim::{AdamW, AdamWParams, Schedule, grad_norm, learning_rate};

/// Optimisation settings shared by SFT and DPO.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    pub learning_rate: f64,
    pub epochs: usize,
    /// Sequences (SFT) or pairs (DPO) per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Share of the optimizer steps spent warming up.
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    /// Clip the global gradient norm to this (0 disables clipping).
    pub max_grad_norm: f64,
    pub adamw: AdamWParams,
    /// Seeds shuffling (and LoRA initialisation, by the caller).
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            learning_rate: 1e-5,
            epochs: 1,
            batch_size: 4,
            grad_accum: 1,
            warmup_ratio: 0.1,
            schedule: Schedule::Cosine,
            max_grad_norm: 1.0,
            adamw: AdamWParams::default(),
            seed: 42,
        }
    }
}

/// DPO settings (TRL's names in brackets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoParams {
    /// Strength of the KL penalty towards the reference (`beta`, default 0.1).
    pub beta: f64,
    /// Conservative DPO: the share of preference labels assumed flipped (`label_smoothing`).
    pub label_smoothing: f64,
    /// Weight of the chosen responses' mean token NLL added to the loss (`rpo_alpha`).
    pub nll_weight: f64,
}

impl Default for DpoParams {
    fn default() -> Self {
        DpoParams {
            beta: 0.1,
            label_smoothing: 0.0,
            nll_weight: 0.0,
        }
    }
}

/// A preference pair with the reference model's summed response log-probabilities.
#[derive(Debug, Clone)]
pub struct ScoredPair {
    pub chosen: Sequence,
    pub rejected: Sequence,
    pub ref_chosen: f64,
    pub ref_rejected: f64,
}

/// DPO's implicit rewards over a step's pairs (means).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DpoStats {
    /// `beta * (log pi(chosen) - log ref(chosen))`.
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Chosen minus rejected reward.
    pub margin: f64,
    /// Share of pairs whose chosen reward exceeds the rejected one.
    pub accuracy: f64,
}

/// What one optimizer step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: usize,
    pub loss: f64,
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens (prompt and response, no padding) processed per second.
    pub tokens_per_second: f64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<DpoStats>,
}

/// Progress events.
pub enum Event<'a> {
    Step(&'a StepLog),
    /// An epoch finished (1-based); a good moment for a checkpoint.
    EpochEnd(usize),
}

/// Mean token cross-entropy of the responses in `seqs` (no gradient kept).
pub fn sft_loss(model: &Llama, seqs: &[Sequence], batch_size: usize) -> Result<f64> {
    let (mut total, mut count) = (0f64, 0usize);
    for chunk in seqs.chunks(batch_size.max(1)) {
        let refs: Vec<&Sequence> = chunk.iter().collect();
        let p = pad(&refs, model.dtype(), model.device())?;
        let logp = model.token_logprobs(&p.tokens, &p.mask, false)?;
        total -= (logp * &p.mask)?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        count += p.response_tokens;
    }
    Ok(total / count.max(1) as f64)
}

/// Summed response log-probability of each sequence (no gradient kept): a reference model's
/// scores for DPO, computed once before the policy trains.
pub fn response_logprobs(model: &Llama, seqs: &[&Sequence], batch_size: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(batch_size.max(1)) {
        let p = pad(chunk, model.dtype(), model.device())?;
        let logp = model.token_logprobs(&p.tokens, &p.mask, false)?;
        let sums = (logp * &p.mask)?
            .sum(D::Minus1)?
            .to_dtype(candle_core::DType::F64)?;
        out.extend(sums.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// DPO statistics of `pairs` under the current model (no gradient kept).
pub fn dpo_stats(
    model: &Llama,
    pairs: &[ScoredPair],
    beta: f64,
    batch_size: usize,
) -> Result<DpoStats> {
    let chosen: Vec<&Sequence> = pairs.iter().map(|p| &p.chosen).collect();
    let rejected: Vec<&Sequence> = pairs.iter().map(|p| &p.rejected).collect();
    let pc = response_logprobs(model, &chosen, batch_size)?;
    let pr = response_logprobs(model, &rejected, batch_size)?;
    let n = pairs.len().max(1) as f64;
    let mut stats = DpoStats::default();
    for (i, pair) in pairs.iter().enumerate() {
        let c = beta * (pc[i] - pair.ref_chosen);
        let r = beta * (pr[i] - pair.ref_rejected);
        stats.chosen_reward += c / n;
        stats.rejected_reward += r / n;
        stats.margin += (c - r) / n;
        stats.accuracy += f64::from(u8::from(c > r)) / n;
    }
    Ok(stats)
}

/// The SFT loss of a micro-batch: its response tokens' summed negative log-likelihood
/// divided by `units`, the response tokens of the whole accumulation group (so the
/// accumulated gradient is the group's token mean, TRL's completion-only loss).
pub fn sft_batch_loss(
    model: &Llama,
    seqs: &[&Sequence],
    units: usize,
    train: bool,
) -> Result<(Tensor, usize)> {
    let p = pad(seqs, model.dtype(), model.device())?;
    let logp = model.token_logprobs(&p.tokens, &p.mask, train)?;
    let loss = ((logp * &p.mask)?.sum_all()?.neg()? / units as f64)?;
    Ok((loss, p.tokens_in_batch))
}

/// The DPO loss of a micro-batch of pairs (TRL's sigmoid loss with label smoothing, plus
/// the chosen responses' token-mean NLL times `nll_weight`), divided by `units`, the pairs
/// of the whole accumulation group. Also the tokens processed and the pairs' rewards
/// summed (not averaged).
pub fn dpo_batch_loss(
    model: &Llama,
    pairs: &[&ScoredPair],
    dpo: &DpoParams,
    units: usize,
    train: bool,
) -> Result<(Tensor, usize, DpoStats)> {
    let b = pairs.len();
    let mut refs: Vec<&Sequence> = pairs.iter().map(|p| &p.chosen).collect();
    refs.extend(pairs.iter().map(|p| &p.rejected));
    let p = pad(&refs, model.dtype(), model.device())?;
    let logp = (model.token_logprobs(&p.tokens, &p.mask, train)? * &p.mask)?;
    let sums = logp.sum(D::Minus1)?;
    let policy_chosen = sums.narrow(0, 0, b)?;
    let policy_rejected = sums.narrow(0, b, b)?;
    let dev = model.device();
    let ref_chosen: Vec<f64> = pairs.iter().map(|p| p.ref_chosen).collect();
    let ref_rejected: Vec<f64> = pairs.iter().map(|p| p.ref_rejected).collect();
    let ref_chosen = Tensor::new(ref_chosen, dev)?.to_dtype(model.dtype())?;
    let ref_rejected = Tensor::new(ref_rejected, dev)?.to_dtype(model.dtype())?;
    let chosen_logratio = (policy_chosen - ref_chosen)?;
    let rejected_logratio = (policy_rejected - ref_rejected)?;
    let logits = ((&chosen_logratio - &rejected_logratio)? * dpo.beta)?;
    let ls = dpo.label_smoothing;
    let per_pair =
        ((log_sigmoid(&logits)? * -(1.0 - ls))? + (log_sigmoid(&logits.neg()?)? * -ls)?)?;
    let mut loss = (per_pair.sum_all()? / units as f64)?;
    if dpo.nll_weight > 0.0 {
        let chosen_tokens: usize = pairs.iter().map(|p| p.chosen.response_len()).sum();
        let nll = (logp.narrow(0, 0, b)?.sum_all()?.neg()? / chosen_tokens.max(1) as f64)?;
        loss = (loss + (nll * (dpo.nll_weight * b as f64 / units as f64))?)?;
    }
    let rewards = |ratio: &Tensor| -> Result<Vec<f64>> {
        Ok((ratio.detach() * dpo.beta)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?)
    };
    let (c, r) = (rewards(&chosen_logratio)?, rewards(&rejected_logratio)?);
    let mut stats = DpoStats::default();
    for (c, r) in c.iter().zip(&r) {
        stats.chosen_reward += c;
        stats.rejected_reward += r;
        stats.margin += c - r;
        stats.accuracy += f64::from(u8::from(c > r));
    }
    Ok((loss, p.tokens_in_batch, stats))
}

/// Supervised fine-tuning on `seqs`.
pub fn train_sft(
    model: &Llama,
    seqs: &[Sequence],
    params: &TrainParams,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<Vec<StepLog>> {
    let lengths: Vec<usize> = seqs.iter().map(|s| s.tokens.len()).collect();
    run(
        model,
        &lengths,
        params,
        on_event,
        &mut |batch: &[usize], group_units: usize| {
            let refs: Vec<&Sequence> = batch.iter().map(|&i| &seqs[i]).collect();
            let (loss, tokens) = sft_batch_loss(model, &refs, group_units, true)?;
            Ok(MicroBatch {
                loss,
                tokens,
                dpo: None,
            })
        },
        &|batch| batch.iter().map(|&i| seqs[i].response_len()).sum(),
    )
}

/// Direct preference optimisation on `pairs`.
pub fn train_dpo(
    model: &Llama,
    pairs: &[ScoredPair],
    params: &TrainParams,
    dpo: &DpoParams,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<Vec<StepLog>> {
    let lengths: Vec<usize> = pairs
        .iter()
        .map(|p| p.chosen.tokens.len().max(p.rejected.tokens.len()))
        .collect();
    run(
        model,
        &lengths,
        params,
        on_event,
        &mut |batch: &[usize], group_units: usize| {
            let refs: Vec<&ScoredPair> = batch.iter().map(|&i| &pairs[i]).collect();
            let (loss, tokens, stats) = dpo_batch_loss(model, &refs, dpo, group_units, true)?;
            Ok(MicroBatch {
                loss,
                tokens,
                dpo: Some(stats),
            })
        },
        &|batch| batch.len(),
    )
}

/// One micro-batch's contribution. `loss` is already divided by the group's unit count
/// (response tokens for SFT, pairs for DPO) so that the accumulated gradient is a mean.
struct MicroBatch {
    loss: Tensor,
    tokens: usize,
    /// DPO statistics summed (not averaged) over the micro-batch's pairs.
    dpo: Option<DpoStats>,
}

type MicroFn<'a> = dyn FnMut(&[usize], usize) -> Result<MicroBatch> + 'a;

fn run(
    model: &Llama,
    lengths: &[usize],
    params: &TrainParams,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
    micro: &mut MicroFn,
    units_of: &dyn Fn(&[usize]) -> usize,
) -> Result<Vec<StepLog>> {
    if lengths.is_empty() {
        bail!("no training examples");
    }
    let vars: Vec<_> = model.trainable().iter().map(|(_, v)| v.clone()).collect();
    if vars.is_empty() {
        bail!("the model has no trainable parameters");
    }
    let mut optimizer = AdamW::new(vars.clone(), params.adamw)?;
    let accum = params.grad_accum.max(1);
    let batches_per_epoch = lengths.len().div_ceil(params.batch_size.max(1));
    let steps_per_epoch = batches_per_epoch.div_ceil(accum) as u64;
    let total_steps = steps_per_epoch * params.epochs as u64;
    let warmup = (params.warmup_ratio * total_steps as f64).round() as u64;
    let mut logs = Vec::new();
    let mut step = 0u64;
    for epoch in 1..=params.epochs {
        let batches = bucketed_batches(lengths, params.batch_size, params.seed, epoch as u64);
        for group in batches.chunks(accum) {
            let started = Instant::now();
            let group_units: usize = group.iter().map(|b| units_of(b)).sum::<usize>().max(1);
            let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
            let (mut loss_sum, mut tokens) = (0f64, 0usize);
            let mut dpo: Option<DpoStats> = None;
            for batch in group {
                let mb = micro(batch, group_units)?;
                let loss_value = mb
                    .loss
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
                if !loss_value.is_finite() {
                    bail!(
                        "loss is {loss_value} at step {} (epoch {epoch}): training stopped before \
                         this step changed any weight; the last checkpoint written is kept",
                        step + 1
                    );
                }
                loss_sum += loss_value;
                tokens += mb.tokens;
                if let Some(s) = mb.dpo {
                    let acc = dpo.get_or_insert_with(DpoStats::default);
                    acc.chosen_reward += s.chosen_reward;
                    acc.rejected_reward += s.rejected_reward;
                    acc.margin += s.margin;
                    acc.accuracy += s.accuracy;
                }
                let store = mb.loss.backward()?;
                for (slot, g) in grads.iter_mut().zip(model.gradients(&store)?) {
                    if let Some(g) = g {
                        *slot = Some(match slot.take() {
                            Some(acc) => (acc + g)?,
                            None => g,
                        });
                    }
                }
            }
            let norm = grad_norm(&grads)?;
            if !norm.is_finite() {
                bail!(
                    "gradient norm is {norm} at step {} (epoch {epoch}): training stopped before \
                     this step changed any weight; the last checkpoint written is kept",
                    step + 1
                );
            }
            let scale = if params.max_grad_norm > 0.0 && norm > params.max_grad_norm {
                params.max_grad_norm / norm
            } else {
                1.0
            };
            let lr = learning_rate(
                params.schedule,
                params.learning_rate,
                warmup,
                step,
                total_steps,
            );
            optimizer.step(&grads, lr, scale)?;
            step += 1;
            let dpo = dpo.map(|s| {
                let n = group_units as f64;
                DpoStats {
                    chosen_reward: s.chosen_reward / n,
                    rejected_reward: s.rejected_reward / n,
                    margin: s.margin / n,
                    accuracy: s.accuracy / n,
                }
            });
            let log = StepLog {
                step,
                total_steps,
                epoch,
                loss: loss_sum,
                learning_rate: lr,
                grad_norm: norm,
                tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64(),
                dpo,
            };
            on_event(Event::Step(&log))?;
            logs.push(log);
        }
        on_event(Event::EpochEnd(epoch))?;
    }
    Ok(logs)
}
