//! Times training steps of a model on random tokens: forward + backward + AdamW, batch B x T.
//! Prints one JSON line per mode with tokens/s and peak resident memory (VmHWM).
//!
//! `cargo run --release -p trainer --example step_bench -- MODEL.gguf [full|lora] [B] [T] [STEPS]`

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};
use trainer::batch::{Sequence, pad};
use trainer::optim::{AdamW, AdamWParams, grad_norm};
use trainer::{Llama, LoraConfig, Tuning, Weights};

/// Forward, backward, optimizer and whole-step durations.
type Timing = (Duration, Duration, Duration, Duration);

fn main() -> Result<()> {
    trainer::process::prepare_for_training();
    let args: Vec<String> = std::env::args().collect();
    let model_path = args
        .get(1)
        .context("usage: step_bench MODEL [full|lora] [B] [T] [STEPS]")?;
    let mode = args.get(2).map_or("full", String::as_str);
    let b: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let t: usize = args.get(4).map_or(Ok(256), |s| s.parse())?;
    let steps: usize = args.get(5).map_or(Ok(3), |s| s.parse())?;
    let weights = Weights::load(model_path.as_ref(), DType::F32, &Device::Cpu)?;
    let tuning = match mode {
        "full" => Tuning::Full,
        "lora" => Tuning::Lora(LoraConfig {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            target_modules: vec!["all-linear".into()],
        }),
        other => anyhow::bail!("mode `{other}`: full or lora"),
    };
    let model = Llama::new(&weights, &tuning, 0)?;
    drop(weights);
    let vars: Vec<_> = model.trainable().iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(vars.clone(), AdamWParams::default())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let vocab = model.config().vocab_size as u32;
    let mut timings = Vec::new();
    for step in 0..=steps {
        // Loss on every position (prompt length 1), as a causal-LM step in PyTorch does.
        let seqs: Vec<Sequence> = (0..b)
            .map(|_| Sequence {
                tokens: (0..t).map(|_| rng.random_range(0..vocab)).collect(),
                prompt_len: 1,
            })
            .collect();
        let refs: Vec<&Sequence> = seqs.iter().collect();
        let p = pad(&refs, DType::F32, &Device::Cpu)?;
        let t0 = Instant::now();
        let logp = model.token_logprobs(&p.tokens, &p.mask, true)?;
        let loss = ((logp * &p.mask)?.sum_all()?.neg()? / p.response_tokens as f64)?;
        let _ = loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let store = loss.backward()?;
        let grads = model.gradients(&store)?;
        drop(store);
        let t2 = Instant::now();
        let norm = grad_norm(&grads)?;
        opt.step(&grads, 1e-5, 1.0f64.min(1.0 / norm.max(1e-12)))?;
        let t3 = Instant::now();
        if step > 0 {
            // Step 0 warms up allocations and thread pools.
            timings.push((t1 - t0, t2 - t1, t3 - t2, t3 - t0));
        }
    }
    let n = timings.len() as f64;
    let mean = |pick: fn(&Timing) -> Duration| {
        timings.iter().map(|x| pick(x).as_secs_f64()).sum::<f64>() / n
    };
    let step_s = mean(|x| x.3);
    println!(
        "{}",
        serde_json::json!({
            "engine": "candle-trainer",
            "mode": mode,
            "batch": b,
            "seq": t,
            "threads": rayon::current_num_threads(),
            "step_seconds": step_s,
            "forward_seconds": mean(|x| x.0),
            "backward_seconds": mean(|x| x.1),
            "optimizer_seconds": mean(|x| x.2),
            "tokens_per_second": (b * t) as f64 / step_s,
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    Ok(())
}

/// Peak resident set size of this process (VmHWM), MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
