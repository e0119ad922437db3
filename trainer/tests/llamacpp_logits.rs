//! The trainer's model against llama.cpp on the real SmolLM2-135M weights: the Q4_1 GGUF is
//! dequantised to f32 by the trainer and exported as an f32 GGUF; llama.cpp evaluates that
//! file and the trainer evaluates its own tensors, on the same tokens; then the same with a
//! LoRA adapter, which llama.cpp applies at run time from the trainer's adapter GGUF.

use anyhow::Result;
use backends::llamacpp::{Tokenizer, position_logits};
use backends::{ChatMessage, Prompt};
use candle_core::{DType, Device, IndexOp, Tensor};
use trainer::checkpoint::{
    GgufType, LoraTensors, Source, Weights, export_gguf, export_lora_gguf, read_lora_gguf,
};
use trainer::{Llama, LoraConfig, Tuning};

/// Largest absolute logit difference allowed. llama.cpp computes in f32 with its own
/// summation order (and f16 for some intermediate products on CPU); logits are of order 10.
const TOLERANCE: f32 = 0.05;

/// The f32 export of the default model, its weights, and the test's tokens (a chat prompt and
/// a response).
fn setup(dir: &std::path::Path) -> Result<(Weights, std::path::PathBuf, Vec<u32>)> {
    let model = backends::models::ensure(&backends::models::SMOLLM2_135M)?;
    let weights = Weights::load(&model, DType::F32, &Device::Cpu)?;
    let Source::Gguf(source) = &weights.source else {
        panic!("a GGUF source")
    };
    let f32_gguf = dir.join("smollm2-f32.gguf");
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
    Ok((weights, f32_gguf, tokens))
}

/// The largest |difference| between the trainer's logits and llama.cpp's, checking that
/// every position's arg-max agrees.
fn worst_difference(llama: &Llama, tokens: &[u32], reference: &[Vec<f32>]) -> Result<f32> {
    let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
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
    Ok(worst)
}

#[test]
fn logits_match_llama_cpp_on_smollm2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (weights, f32_gguf, tokens) = setup(dir.path())?;
    let reference = position_logits(&f32_gguf, None, &tokens, 2)?;
    let llama = Llama::new(&weights, &Tuning::Frozen, 0)?;
    let worst = worst_difference(&llama, &tokens, &reference)?;
    eprintln!(
        "{} positions, largest |logit difference| {worst}",
        reference.len()
    );
    assert!(worst < TOLERANCE, "largest logit difference {worst}");
    Ok(())
}

/// A LoRA on every projection, with B drawn at random so that the update matters, written as
/// a llama.cpp adapter GGUF in f32 and in f16: llama.cpp applies each over the f32 base, and
/// its logits match the trainer's forward pass with the adapter read back from that file
/// (q/k rows back from llama.cpp's rotary order, alpha / r scaling), which is the adapter a
/// loop round continues; the f32 file reads back exactly, and the adapter moves the logits
/// far from the base's.
#[test]
fn lora_adapter_gguf_matches_the_trainer_in_llama_cpp() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (weights, f32_gguf, tokens) = setup(dir.path())?;
    let Source::Gguf(source) = &weights.source else {
        panic!("a GGUF source")
    };
    let lora = LoraConfig {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        target_modules: vec!["all-linear".into()],
    };
    let llama = Llama::new(&weights, &Tuning::Lora(lora.clone()), 7)?;
    let names: Vec<String> = llama
        .trainable()
        .iter()
        .filter(|(n, _)| n.ends_with("lora_B"))
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(names.len(), 30 * 7, "every projection of the 30 layers");
    for name in &names {
        let shape = llama
            .trainable()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor().shape().clone())
            .unwrap();
        llama.set_trainable(name, &Tensor::randn(0f32, 0.02, shape, &Device::Cpu)?)?;
    }
    let tensors = llama.lora_tensors().expect("a LoRA model");
    let error = read_lora_gguf(&f32_gguf, &weights, DType::F32, &Device::Cpu)
        .err()
        .expect("a model is not an adapter")
        .to_string();
    assert!(error.contains("not a LoRA adapter GGUF"), "{error}");
    let base = position_logits(&f32_gguf, None, &tokens, 2)?;
    let mut adapted_by_type = Vec::new();
    for ty in [GgufType::F32, GgufType::F16] {
        let adapter = dir.path().join(format!("adapter-{ty:?}.gguf"));
        export_lora_gguf(source, &weights.config, &tensors, ty, &adapter)?;
        let back = read_lora_gguf(&adapter, &weights, DType::F32, &Device::Cpu)?;
        assert_eq!((back.rank, back.alpha), (8, 16.0));
        let written = largest_change(&tensors, &back)?;
        match ty {
            GgufType::F32 => assert_eq!(written, 0.0, "f32 reads back exactly"),
            // f16 keeps 11 significant bits; the tensors are below 4 in magnitude.
            _ => assert!(written > 0.0 && written < 4.0 / 2048.0, "{ty:?}: {written}"),
        }
        let continued = Llama::new(&weights, &Tuning::Lora(lora.clone()), 0)?;
        continued.load_adapter(&back)?;
        let adapted = position_logits(&f32_gguf, Some(&adapter), &tokens, 2)?;
        let moved = largest_difference(&base, &adapted);
        let worst = worst_difference(&continued, &tokens, &adapted)?;
        eprintln!(
            "{ty:?}: {} positions: the adapter moves llama.cpp's logits by up to {moved}; \
             largest |logit difference| to the trainer with the adapter read back {worst}; \
             largest |tensor change| on the way {written}",
            adapted.len()
        );
        assert!(
            moved > 1.0,
            "the adapter barely changes the logits: {moved}"
        );
        assert!(
            worst < TOLERANCE,
            "{ty:?}: largest logit difference {worst}"
        );
        adapted_by_type.push(adapted);
    }
    eprintln!(
        "f16 against f32 adapter in llama.cpp: largest |logit difference| {}",
        largest_difference(&adapted_by_type[0], &adapted_by_type[1])
    );
    Ok(())
}

fn largest_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// The largest |difference| between two adapters' tensors, which must cover the same modules.
fn largest_change(a: &LoraTensors, b: &LoraTensors) -> Result<f32> {
    assert_eq!(
        a.modules.keys().collect::<Vec<_>>(),
        b.modules.keys().collect::<Vec<_>>()
    );
    let mut worst = 0f32;
    for (module, (a1, b1)) in &a.modules {
        let (a2, b2) = &b.modules[module];
        for (x, y) in [(a1, a2), (b1, b2)] {
            let diff = (x - y)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            worst = worst.max(diff);
        }
    }
    Ok(worst)
}
