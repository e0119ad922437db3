//! The trainer's model against llama.cpp on the real SmolLM2-135M weights: the Q4_1 GGUF is
//! dequantised to f32 by the trainer and exported as an f32 GGUF; llama.cpp evaluates that
//! file and the trainer evaluates its own tensors, on the same tokens.

use anyhow::Result;
use backends::llamacpp::{Tokenizer, position_logits};
use backends::{ChatMessage, Prompt};
use candle_core::{DType, Device, IndexOp, Tensor};
use trainer::checkpoint::{GgufType, Source, Weights, export_gguf};
use trainer::{Llama, Tuning};

/// Largest absolute logit difference allowed. llama.cpp computes in f32 with its own
/// summation order (and f16 for some intermediate products on CPU); logits are of order 10.
const TOLERANCE: f32 = 0.05;

#[test]
fn logits_match_llama_cpp_on_smollm2() -> Result<()> {
    let model = backends::models::ensure(&backends::models::SMOLLM2_135M)?;
    let weights = Weights::load(&model, DType::F32, &Device::Cpu)?;
    let Source::Gguf(source) = &weights.source else {
        panic!("a GGUF source")
    };
    let dir = tempfile::tempdir()?;
    let f32_gguf = dir.path().join("smollm2-f32.gguf");
    export_gguf(
        source,
        &weights.config,
        &weights.tensors,
        GgufType::F32,
        &f32_gguf,
    )?;

    let tokenizer = Tokenizer::load(&model)?;
    let prompt = Prompt::Chat(vec![ChatMessage {
        role: "user".into(),
        content: "Natalia sold clips to 48 of her friends in April, and then she sold half as \
                  many clips in May. How many clips did Natalia sell altogether?"
            .into(),
    }]);
    let mut tokens = tokenizer.prompt(&prompt)?;
    tokens.extend(tokenizer.response(&prompt, "She sold 48 / 2 = 24 in May, 72 in total.")?);
    let reference = position_logits(&f32_gguf, &tokens, 2)?;

    let llama = Llama::new(&weights, &Tuning::Frozen, 0)?;
    let input = Tensor::new(tokens.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let logits = llama.forward(&input)?.i(0)?;
    let mut worst = 0f32;
    for (pos, expected) in reference.iter().enumerate() {
        let ours = logits.i(pos)?.to_vec1::<f32>()?;
        assert_eq!(ours.len(), expected.len());
        let diff = ours
            .iter()
            .zip(expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(diff);
        let argmax = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
        };
        assert_eq!(
            argmax(&ours),
            argmax(expected),
            "argmax differs at position {pos}"
        );
    }
    eprintln!(
        "{} positions, largest |logit difference| {worst}",
        reference.len()
    );
    assert!(worst < TOLERANCE, "largest logit difference {worst}");
    Ok(())
}
