//! `harness train` end to end on the real SmolLM2-135M: SFT makes the model reproduce trained
//! answers through the llama.cpp backend; DPO starts at ln 2 and raises the held-out margin;
//! the PEFT adapter has PEFT's names and shapes and equals the merged export when applied.

use std::collections::HashMap;
use std::path::Path;

use backends::{Backend, ChatMessage, LlamaCpp, LlamaCppConfig, Prompt, Request, Sampling};
use candle_core::{DType, Device};
use e2e_tests::{default_model, harness_ok, read_jsonl, serial};
use serde_json::{Value, json};

const COLORS: [&str; 16] = [
    "crimson", "amber", "teal", "violet", "olive", "cobalt", "maroon", "ivory", "scarlet",
    "indigo", "saffron", "jade", "coral", "umber", "azure", "lilac",
];

fn vault_question(i: usize) -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: "user".into(),
        content: format!("What is the color of vault {i}?"),
    }]
}

fn write_jsonl(path: &Path, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("train_summary.json")).unwrap()).unwrap()
}

#[test]
fn sft_halves_the_loss_and_the_exported_gguf_reproduces_trained_answers() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sft.jsonl");
    let records: Vec<Value> = COLORS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"prompt": vault_question(i + 1), "completion": format!("Vault {} is painted {c}.", i + 1)})
        })
        .collect();
    write_jsonl(&data, &records);
    let out = dir.path().join("out");
    let model = default_model();
    let stdout = harness_ok(&[
        "train",
        "--method",
        "sft",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--full",
        "--lr",
        "1e-4",
        "--epochs",
        "8",
        "--batch-size",
        "4",
        "--warmup-ratio",
        "0",
        "--schedule",
        "constant",
        "--gguf-type",
        "q8_0",
        "--training-data-stats",
        "--out",
        out.to_str().unwrap(),
    ]);
    let s = summary(&out);
    let (before, after) = (
        s["loss_before"].as_f64().unwrap(),
        s["loss_after"].as_f64().unwrap(),
    );
    assert!(after < before / 2.0, "loss {before} -> {after}\n{stdout}");
    assert_eq!(s["examples"], 16);
    let log = read_jsonl(&out.join("train_log.jsonl"));
    assert_eq!(log.len(), 32, "4 steps per epoch, 8 epochs");
    for line in &log {
        for field in ["loss", "learning_rate", "grad_norm", "tokens_per_second"] {
            assert!(
                line[field].as_f64().unwrap().is_finite(),
                "{field} in {line}"
            );
        }
    }

    // Greedy decoding of the exported GGUF by the embedded llama.cpp backend.
    let mut backend = LlamaCpp::new(LlamaCppConfig {
        parallel: backends::Parallel::Fixed(4),
        ..LlamaCppConfig::new(out.join("model.gguf"))
    })
    .unwrap();
    let asked = [3usize, 7, 12, 16];
    let requests: Vec<Request> = asked
        .iter()
        .map(|&i| Request {
            prompt: Prompt::Chat(vault_question(i)),
            sampling: Sampling {
                max_tokens: 16,
                ..Sampling::default()
            },
            seed: 0,
            indices: vec![0],
        })
        .collect();
    let mut answers = HashMap::new();
    backend
        .generate(&requests, &mut |c| {
            answers.insert(c.request, c.text);
            Ok(())
        })
        .unwrap();
    let reproduced: Vec<_> = asked
        .iter()
        .enumerate()
        .filter(|(r, i)| answers[r].contains(&format!("Vault {i} is painted {}.", COLORS[**i - 1])))
        .map(|(_, i)| *i)
        .collect();
    assert!(
        reproduced.len() >= 2,
        "trained answers reproduced for vaults {reproduced:?} of {asked:?}: {answers:?}"
    );
}

fn addition_pairs(seed: u64, n: usize) -> Vec<Value> {
    let mut state = seed;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    (0..n)
        .map(|_| {
            let (a, b) = (10 + next(90), 10 + next(90));
            let wrong = a + b + 1 + next(9);
            json!({
                "prompt": [{"role": "user", "content": format!("Is {a} + {b} equal to {}? Answer and explain.", a + b)}],
                "chosen": format!("Yes. {a} + {b} = {}.", a + b),
                "rejected": format!("No. {a} + {b} = {wrong}."),
            })
        })
        .collect()
}

#[test]
fn dpo_starts_at_ln2_and_raises_the_held_out_margin() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (train, eval) = (
        dir.path().join("train.jsonl"),
        dir.path().join("eval.jsonl"),
    );
    write_jsonl(&train, &addition_pairs(1, 16));
    write_jsonl(&eval, &addition_pairs(2, 8));
    let out = dir.path().join("out");
    let model = default_model();
    harness_ok(&[
        "train",
        "--method",
        "dpo",
        "--data",
        train.to_str().unwrap(),
        "--eval-data",
        eval.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--lora-rank",
        "8",
        "--lora-dropout",
        "0",
        "--lr",
        "2e-4",
        "--epochs",
        "2",
        "--gguf-type",
        "none",
        "--training-data-stats",
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = read_jsonl(&out.join("train_log.jsonl"));
    let first = &log[0];
    let loss = first["loss"].as_f64().unwrap();
    assert!(
        (loss - std::f64::consts::LN_2).abs() < 1e-4,
        "first-step loss {loss}"
    );
    for field in ["chosen_reward", "rejected_reward", "margin"] {
        assert!(
            first[field].as_f64().unwrap().abs() < 1e-4,
            "{field} in {first}"
        );
    }
    let s = summary(&out);
    let before = s["eval_dpo_before"]["margin"].as_f64().unwrap();
    let after = s["eval_dpo_after"]["margin"].as_f64().unwrap();
    assert!(
        before.abs() < 1e-4,
        "held-out margin before training {before}"
    );
    assert!(after > 0.5, "held-out margin after training {after}");
    assert!(
        s["eval_dpo_after"]["accuracy"].as_f64().unwrap() > 0.7,
        "{s}"
    );
    // Asked for (--training-data-stats; the loop leaves it off), the rewards on the trained
    // pairs after training.
    let trained = s["dpo_after"]["margin"].as_f64().unwrap();
    assert!(
        trained > 0.5,
        "training-pair margin after training {trained}"
    );
    // Training alone (reference scoring and steps) leaves out loading the model and the
    // held-out scoring before and after, so it is a part of the job's time, not all of it.
    let (train_seconds, seconds) = (
        s["train_seconds"].as_f64().unwrap(),
        s["seconds"].as_f64().unwrap(),
    );
    assert!(
        train_seconds > 0.0 && train_seconds < seconds,
        "train_seconds {train_seconds} of {seconds}"
    );
}

#[test]
fn peft_adapter_has_peft_names_and_equals_the_merged_export() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sft.jsonl");
    let records: Vec<Value> = (1..=4)
        .map(|i| json!({"prompt": vault_question(i), "completion": format!("Vault {i} is painted {}.", COLORS[i])}))
        .collect();
    write_jsonl(&data, &records);
    let out = dir.path().join("out");
    let model = default_model();
    harness_ok(&[
        "train",
        "--method",
        "sft",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--lora-targets",
        "q_proj,v_proj,down_proj",
        "--lr",
        "1e-3",
        "--epochs",
        "1",
        "--gguf-type",
        "none",
        "--export-hf",
        "--out",
        out.to_str().unwrap(),
    ]);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"].as_f64(), Some(8.0));
    assert_eq!(
        config["target_modules"],
        json!(["down_proj", "q_proj", "v_proj"])
    );
    assert!(config["modules_to_save"].is_null());

    let adapter =
        candle_core::safetensors::load(out.join("adapter/adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let merged =
        candle_core::safetensors::load(out.join("hf/model.safetensors"), &Device::Cpu).unwrap();
    let base = trainer::Weights::load(&model, DType::F32, &Device::Cpu).unwrap();
    // 30 layers x 3 modules x (A, B).
    assert_eq!(adapter.len(), 30 * 3 * 2);
    let shapes = [
        ("self_attn.q_proj", 576),
        ("self_attn.v_proj", 192),
        ("mlp.down_proj", 576),
    ];
    let inputs = [
        ("self_attn.q_proj", 576),
        ("self_attn.v_proj", 576),
        ("mlp.down_proj", 1536),
    ];
    let mut b_nonzero = false;
    for layer in 0..30 {
        for ((module, out_dim), (_, in_dim)) in shapes.iter().zip(inputs) {
            let name = format!("model.layers.{layer}.{module}");
            let a = &adapter[&format!("base_model.model.{name}.lora_A.weight")];
            let b = &adapter[&format!("base_model.model.{name}.lora_B.weight")];
            assert_eq!(a.dims(), &[4, in_dim], "{name} A");
            assert_eq!(b.dims(), &[*out_dim, 4], "{name} B");
            b_nonzero |= b
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0;
            // W + (alpha / r) B A, as PEFT merges.
            let applied = (base.get(&format!("{name}.weight")).unwrap()
                + (b.matmul(a).unwrap() * 2.0).unwrap())
            .unwrap();
            let diff = (applied - &merged[&format!("{name}.weight")])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                diff < 1e-5,
                "{name}: applied adapter differs from the merged export by {diff}"
            );
        }
    }
    assert!(b_nonzero, "training moved no B factor");
    // Untouched modules equal the base.
    let untouched = "model.layers.5.mlp.up_proj.weight";
    let diff: f32 = (base.get(untouched).unwrap() - &merged[untouched])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);
}
