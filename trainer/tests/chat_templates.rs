//! Real chat templates of ten models (SmolLM2, Qwen2.5, Qwen3, Llama 3.1, Llama 3.2,
//! Mistral Nemo, Gemma 2, Phi-3.5, DeepSeek-R1-Distill, Command R7B's tool_use template, which
//! needs transformers' block trimming and `{% break %}`) rendered and tokenized by the trainer
//! against what transformers' `apply_chat_template` gives (fixtures/chat-templates/expected.json,
//! made by scripts/make-chat-template-fixtures.sh): byte-identical text, identical ids, the
//! same refusals. vLLM renders chat prompts with transformers, so this is what a run served by
//! vLLM samples from. Also a raw-text prompt on a tokenizer whose post-processor adds BOS.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Result;
use backends::{ChatMessage, Prompt};
use serde_json::Value;
use trainer::text::TextTokenizer;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// SmolLM2's tokenizer.json, unpacked.
fn smollm2_tokenizer_json() -> Result<Value> {
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(
        fixtures().join("smollm2-tokenizer/tokenizer.json.gz"),
    )?)
    .read_to_string(&mut json)?;
    Ok(serde_json::from_str(&json)?)
}

/// A Hugging Face folder: `tokenizer` as tokenizer.json, `config` as tokenizer_config.json,
/// and `template` as chat_template.jinja.
fn folder(dir: &Path, tokenizer: &Value, config: &Value, template: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(tokenizer)?,
    )?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string(config)?,
    )?;
    std::fs::write(dir.join("chat_template.jinja"), template)?;
    Ok(())
}

fn message(m: &Value) -> ChatMessage {
    ChatMessage {
        role: m["role"].as_str().unwrap().into(),
        content: m["content"].as_str().unwrap().into(),
    }
}

#[test]
fn real_chat_templates_render_and_tokenize_as_transformers_does() -> Result<()> {
    // The fixtures froze strftime_now at 2024-07-26 12:00 (Llama 3.2 prints today's date).
    // SAFETY: this test binary has this one test, so no other thread reads the environment.
    unsafe { std::env::set_var("SOURCE_DATE_EPOCH", "1721995200") };
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(
        fixtures().join("chat-templates/expected.json"),
    )?)?;
    let tokenizer_json = smollm2_tokenizer_json()?;
    let tmp = tempfile::tempdir()?;
    let plain = tmp.path().join("tokenizer.json");
    std::fs::write(&plain, serde_json::to_string(&tokenizer_json)?)?;
    let reference = tokenizers::Tokenizer::from_file(&plain).map_err(anyhow::Error::msg)?;

    let families = expected["families"].as_array().unwrap();
    assert_eq!(families.len(), 10);
    let (mut rendered, mut refused) = (0, 0);
    for family in families {
        let name = family["template"].as_str().unwrap();
        let template = std::fs::read_to_string(fixtures().join("chat-templates").join(name))?;
        let dir = tmp.path().join(name);
        folder(&dir, &tokenizer_json, &family["special_tokens"], &template)?;
        let TextTokenizer::Hf(tokenizer) = TextTokenizer::load(&dir)? else {
            panic!("a folder loads as a Hugging Face tokenizer");
        };
        for case in family["cases"].as_array().unwrap() {
            let label = format!("{name}, {}", case["case"]);
            let mut messages: Vec<ChatMessage> = case["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(message)
                .collect();
            let assistant = match messages.last() {
                Some(m) if m.role == "assistant" => messages.pop().map(|m| m.content),
                _ => None,
            };
            let generation = case["add_generation_prompt"].as_bool().unwrap();
            let ours = tokenizer.apply_chat_template(&messages, assistant.as_deref(), generation);
            if let Some(error) = case["error"].as_str() {
                let ours = ours.expect_err(&label);
                assert!(format!("{ours:#}").contains(error), "{label}: {ours:#}");
                refused += 1;
                continue;
            }
            let text = ours.unwrap_or_else(|e| panic!("{label}: {e:#}"));
            assert_eq!(text, case["text"].as_str().unwrap(), "{label}");
            let ids: Vec<u32> = serde_json::from_value(case["ids"].clone())?;
            let encoded = reference
                .encode(text.as_str(), false)
                .map_err(anyhow::Error::msg)?;
            assert_eq!(encoded.get_ids(), ids, "{label}");
            if generation && assistant.is_none() {
                // The trainer's own path for a prompt.
                assert_eq!(tokenizer.prompt(&Prompt::Chat(messages))?, ids, "{label}");
            }
            rendered += 1;
        }
    }
    // Gemma 2 refuses a system message (its template raises), as transformers does.
    assert_eq!((rendered, refused), (37, 3));

    // A raw-text prompt: ids as tokenizer(text) gives them, BOS first from the post-processor.
    let bos = &expected["plain_text_with_bos"];
    let mut with_bos = tokenizer_json.clone();
    with_bos["post_processor"] = bos["post_processor"].clone();
    let dir = tmp.path().join("with-bos");
    let smollm2 = &families[0];
    folder(&dir, &with_bos, &smollm2["special_tokens"], "")?;
    let tokenizer = TextTokenizer::load(&dir)?;
    let ids: Vec<u32> = serde_json::from_value(bos["ids"].clone())?;
    assert_eq!(ids[0], 1);
    let text = bos["text"].as_str().unwrap().to_string();
    assert_eq!(tokenizer.prompt(&Prompt::Text(text))?, ids);
    Ok(())
}
