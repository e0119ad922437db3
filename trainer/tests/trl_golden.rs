//! The SFT and DPO losses against TRL's: two tiny random Llamas (a policy and a reference,
//! Hugging Face folders) and a fixed batch of token ids, with the values TRL computed on
//! them, are kept in `tests/fixtures/trl/` by `scripts/make_trl_fixture.py`. The same
//! batch through this crate's loader, forward pass and losses must give the same numbers.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::{DType, Device};
use serde_json::Value;
use trainer::batch::Sequence;
use trainer::checkpoint::Weights;
use trainer::train::{DpoParams, ScoredPair, dpo_batch_loss, response_logprobs, sft_batch_loss};
use trainer::{Llama, Tuning};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trl")
}

fn load(name: &str) -> Result<Llama> {
    let weights = Weights::load(&fixture().join(name), DType::F32, &Device::Cpu)?;
    Llama::new(&weights, &Tuning::Full, 0)
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("a list of token ids")
        .iter()
        .map(|v| v.as_u64().expect("a token id") as u32)
        .collect()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// (chosen, rejected) sequences of the fixture's pairs.
fn sequences(expected: &Value) -> Vec<(Sequence, Sequence)> {
    expected["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| {
            let seq = |key: &str| Sequence::new(ids(&p["prompt"]), ids(&p[key]), 64).unwrap();
            (seq("chosen"), seq("rejected"))
        })
        .collect()
}

fn close(name: &str, ours: f64, trl: &Value) {
    let trl = trl.as_f64().unwrap_or_else(|| panic!("{name}: no value"));
    let tolerance = 2e-5 * trl.abs().max(1.0);
    assert!(
        (ours - trl).abs() <= tolerance,
        "{name}: ours {ours}, TRL {trl} (difference {:e})",
        ours - trl
    );
}

#[test]
fn dpo_loss_rewards_and_margins_equal_trls() -> Result<()> {
    let expected = expected();
    let (policy, reference) = (load("policy")?, load("reference")?);
    let seqs = sequences(&expected);
    let chosen: Vec<&Sequence> = seqs.iter().map(|(c, _)| c).collect();
    let rejected: Vec<&Sequence> = seqs.iter().map(|(_, r)| r).collect();
    let (ref_chosen, ref_rejected) = (
        response_logprobs(&reference, &chosen, 8)?,
        response_logprobs(&reference, &rejected, 8)?,
    );
    let pairs: Vec<ScoredPair> = seqs
        .iter()
        .enumerate()
        .map(|(i, (c, r))| ScoredPair {
            chosen: c.clone(),
            rejected: r.clone(),
            ref_chosen: ref_chosen[i],
            ref_rejected: ref_rejected[i],
        })
        .collect();
    let refs: Vec<&ScoredPair> = pairs.iter().collect();
    let n = pairs.len() as f64;
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let policy_chosen = mean(response_logprobs(&policy, &chosen, 8)?);
    let policy_rejected = mean(response_logprobs(&policy, &rejected, 8)?);

    let cases = expected["dpo"].as_array().expect("dpo cases");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let params = DpoParams {
            beta: case["beta"].as_f64().unwrap(),
            label_smoothing: case["label_smoothing"].as_f64().unwrap(),
            nll_weight: case["nll_weight"].as_f64().unwrap(),
        };
        let label = format!("{params:?}");
        close(
            "chosen log-probability",
            policy_chosen,
            &case["logps/chosen"],
        );
        close(
            "rejected log-probability",
            policy_rejected,
            &case["logps/rejected"],
        );
        // The batch is one accumulation group of n pairs: the loss is the pairs' mean.
        let (loss, _, stats) = dpo_batch_loss(&policy, &refs, &params, pairs.len(), false)?;
        let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        close(&format!("{label} loss"), loss, &case["loss"]);
        close(
            &format!("{label} chosen reward"),
            stats.chosen_reward / n,
            &case["rewards/chosen"],
        );
        close(
            &format!("{label} rejected reward"),
            stats.rejected_reward / n,
            &case["rewards/rejected"],
        );
        close(
            &format!("{label} margin"),
            stats.margin / n,
            &case["rewards/margins"],
        );
        close(
            &format!("{label} accuracy"),
            stats.accuracy / n,
            &case["rewards/accuracies"],
        );
    }
    Ok(())
}

#[test]
fn sft_loss_equals_trls_completion_only_loss() -> Result<()> {
    let expected = expected();
    let policy = load("policy")?;
    let seqs = sequences(&expected);
    let chosen: Vec<&Sequence> = seqs.iter().map(|(c, _)| c).collect();
    let tokens: usize = chosen.iter().map(|s| s.response_len()).sum();
    let (loss, _) = sft_batch_loss(&policy, &chosen, tokens, false)?;
    let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    close("SFT loss", loss, &expected["sft"]["loss"]);
    Ok(())
}
