//! Every parameter kind's gradient against central finite differences, in f64 on a tiny
//! random model. This guards against candle ops that cut the gradient silently (candle
//! 0.11's fused softmax, rms_norm and rope do).

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::checkpoint::{Source, Weights};
use trainer::{Llama, LlamaConfig, LoraConfig, Tuning};

fn tiny_config(tied: bool) -> LlamaConfig {
    LlamaConfig {
        hidden_size: 8,
        intermediate_size: 12,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        vocab_size: 11,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 16,
        tie_word_embeddings: tied,
        attention_bias: true,
        rope_scaling: None,
    }
}

fn random(rng: &mut ChaCha8Rng, shape: &[usize], scale: f64, offset: f64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| offset + scale * rng.random_range(-1.0..1.0))
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn random_weights(config: &LlamaConfig, seed: u64) -> Result<Weights> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (h, i, v) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let kv = config.num_key_value_heads * config.head_dim();
    let mut t = BTreeMap::new();
    t.insert(
        "model.embed_tokens.weight".into(),
        random(&mut rng, &[v, h], 0.5, 0.0)?,
    );
    t.insert(
        "model.norm.weight".into(),
        random(&mut rng, &[h], 0.2, 1.0)?,
    );
    if !config.tie_word_embeddings {
        t.insert(
            "lm_head.weight".into(),
            random(&mut rng, &[v, h], 0.5, 0.0)?,
        );
    }
    for l in 0..config.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut put = |name: &str, shape: &[usize], scale: f64, offset: f64| -> Result<()> {
            t.insert(
                format!("{p}.{name}"),
                random(&mut rng, shape, scale, offset)?,
            );
            Ok(())
        };
        put("input_layernorm.weight", &[h], 0.2, 1.0)?;
        put("post_attention_layernorm.weight", &[h], 0.2, 1.0)?;
        put("self_attn.q_proj.weight", &[h, h], 0.5, 0.0)?;
        put("self_attn.q_proj.bias", &[h], 0.3, 0.0)?;
        put("self_attn.k_proj.weight", &[kv, h], 0.5, 0.0)?;
        put("self_attn.k_proj.bias", &[kv], 0.3, 0.0)?;
        put("self_attn.v_proj.weight", &[kv, h], 0.5, 0.0)?;
        put("self_attn.v_proj.bias", &[kv], 0.3, 0.0)?;
        put("self_attn.o_proj.weight", &[h, h], 0.5, 0.0)?;
        put("mlp.gate_proj.weight", &[i, h], 0.5, 0.0)?;
        put("mlp.up_proj.weight", &[i, h], 0.5, 0.0)?;
        put("mlp.down_proj.weight", &[h, i], 0.5, 0.0)?;
    }
    Ok(Weights {
        config: config.clone(),
        tensors: t,
        source: Source::Memory,
    })
}

/// A scalar loss through every path the trainer uses: hidden states, logits, log-softmax,
/// the gather of target tokens and the masked sum.
fn loss(model: &Llama, tokens: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let logp = model.token_logprobs(tokens, mask, false)?;
    Ok((logp * mask)?.sum_all()?.neg()?)
}

/// The fused CPU kernels are switched process-wide; tests in this file take turns.
static FUSED_SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Checks with the fused CPU kernels and with the composed ops.
fn check(model: &Llama, kinds: &[&str]) -> Result<()> {
    let _turn = FUSED_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    for fused in [true, false] {
        trainer::fused::set_enabled(fused);
        let result = check_once(model, kinds);
        trainer::fused::set_enabled(true);
        result.map_err(|e| {
            e.context(format!(
                "fused kernels {}",
                if fused { "on" } else { "off" }
            ))
        })?;
    }
    Ok(())
}

fn check_once(model: &Llama, kinds: &[&str]) -> Result<()> {
    let dev = Device::Cpu;
    let tokens = Tensor::new(&[[1u32, 5, 7, 2, 9, 3], [4, 4, 10, 0, 6, 8]], &dev)?;
    let mask = Tensor::new(&[[0f64, 1., 1., 1., 1.], [1., 1., 0., 1., 1.]], &dev)?;
    let grads = model.gradients(&loss(model, &tokens, &mask)?.backward()?)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for ((name, var), grad) in model.trainable().iter().zip(grads) {
        let grad =
            grad.unwrap_or_else(|| panic!("{name}: no gradient (cut by an op without backward)"));
        let grad = grad.flatten_all()?.to_vec1::<f64>()?;
        let original = var.as_tensor().copy()?;
        let flat = original.flatten_all()?.to_vec1::<f64>()?;
        for _ in 0..3 {
            let i = rng.random_range(0..flat.len());
            let eps = 1e-6;
            let at = |delta: f64| -> Result<f64> {
                let mut v = flat.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, original.shape(), &dev)?)?;
                Ok(loss(model, &tokens, &mask)?.to_scalar::<f64>()?)
            };
            let numeric = (at(eps)? - at(-eps)?) / (2.0 * eps);
            var.set(&original)?;
            let analytic = grad[i];
            let tol = 1e-6 + 1e-5 * numeric.abs().max(analytic.abs());
            assert!(
                (numeric - analytic).abs() < tol,
                "{name}[{i}]: analytic {analytic} vs finite difference {numeric}"
            );
        }
        for kind in kinds {
            if name.contains(kind) {
                seen.insert(*kind);
            }
        }
    }
    assert_eq!(
        seen.len(),
        kinds.len(),
        "checked kinds {seen:?} of {kinds:?}"
    );
    Ok(())
}

#[test]
fn full_fine_tuning_gradients_match_finite_differences() -> Result<()> {
    for tied in [false, true] {
        let weights = random_weights(&tiny_config(tied), 1)?;
        let model = Llama::new(&weights, &Tuning::Full, 0)?;
        assert_eq!(model.dtype(), DType::F64);
        let mut kinds = vec![
            "embed_tokens",
            "input_layernorm",
            "post_attention_layernorm",
            "model.norm",
            "q_proj.weight",
            "q_proj.bias",
            "k_proj.weight",
            "k_proj.bias",
            "v_proj.weight",
            "v_proj.bias",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ];
        if !tied {
            kinds.push("lm_head");
        }
        check(&model, &kinds)?;
    }
    Ok(())
}

#[test]
fn lora_gradients_match_finite_differences() -> Result<()> {
    let weights = random_weights(&tiny_config(false), 2)?;
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        target_modules: vec!["all-linear".into()],
    };
    let model = Llama::new(&weights, &Tuning::Lora(lora), 3)?;
    // B starts at zero (so A's gradient would be zero): give it values first.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let names: Vec<String> = model.trainable().iter().map(|(n, _)| n.clone()).collect();
    for name in names.iter().filter(|n| n.ends_with("lora_B")) {
        let shape = model
            .trainable()
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .as_tensor()
            .dims()
            .to_vec();
        model.set_trainable(name, &random(&mut rng, &shape, 0.3, 0.0)?)?;
    }
    assert_eq!(
        names.len(),
        2 * 7 * 2,
        "A and B for 7 projections in 2 layers"
    );
    check(
        &model,
        &[
            "q_proj.lora_A",
            "q_proj.lora_B",
            "k_proj.lora_A",
            "v_proj.lora_B",
            "o_proj.lora_A",
            "gate_proj.lora_B",
            "up_proj.lora_A",
            "down_proj.lora_B",
        ],
    )
}
