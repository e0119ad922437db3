//! A Hugging Face folder's tokenizer and chat template (tokenizers + minijinja) against
//! llama.cpp's on the GGUF they were written from (SmolLM2-135M-Instruct; the folder was
//! written by transformers from that GGUF: scripts/make_hf_tokenizer_fixture.py). Training on
//! a folder must see the tokens the sampler saw.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Result;
use backends::{ChatMessage, Prompt};
use trainer::text::TextTokenizer;

/// The fixture folder, with tokenizer.json unpacked, in a temporary directory.
fn hf_folder() -> Result<tempfile::TempDir> {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-tokenizer");
    let dir = tempfile::tempdir()?;
    for name in ["tokenizer_config.json", "chat_template.jinja"] {
        std::fs::copy(fixture.join(name), dir.path().join(name))?;
    }
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixture.join("tokenizer.json.gz"))?)
        .read_to_string(&mut json)?;
    std::fs::write(dir.path().join("tokenizer.json"), json)?;
    Ok(dir)
}

fn chat(system: Option<&str>, user: &str) -> Prompt {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: system.into(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: user.into(),
    });
    Prompt::Chat(messages)
}

#[test]
fn a_folders_tokenizer_gives_llama_cpps_tokens_on_smollm2() -> Result<()> {
    let gguf = TextTokenizer::load(&backends::models::ensure(&backends::models::SMOLLM2_135M)?)?;
    let folder = hf_folder()?;
    let hf = TextTokenizer::load(folder.path())?;
    assert!(matches!(hf, TextTokenizer::Hf(_)));
    assert_eq!(hf.vocab_size(), gguf.vocab_size());

    let system = "You are a careful math tutor. Solve the problem step by step, then give the \
                  final answer after \"The answer is\".";
    let prompts = [
        chat(
            Some(system),
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
        ),
        chat(
            Some(system),
            "Compute $\\frac{3}{4} + \\sqrt{2}^{2}$ and write it as a mixed number: 2\\frac{3}{4}.",
        ),
        chat(
            Some("Answer with one letter."),
            "Where would you put a plate after washing it?\nA. cupboard\nB. table\nC. floor",
        ),
        chat(
            Some(system),
            "What is (17 * -3) + 250 / 5?  Ünïcödé, tabs\tand  double  spaces.\n\n",
        ),
        Prompt::Text("Question: What is 2 + 2?\nAnswer:".into()),
    ];
    let responses = [
        "48 / 2 = 24 clips in May.\n48 + 24 = 72.\nThe answer is 72.",
        "def f(x):\n    return x ** 2  # squares\n",
        "Model text that mentions <|im_end|> literally is data, not a turn end.",
        " leading space, trailing newline\n",
        "",
    ];
    for prompt in &prompts {
        assert_eq!(
            hf.prompt(prompt)?,
            gguf.prompt(prompt)?,
            "prompt {prompt:?}"
        );
        for response in responses {
            assert_eq!(
                hf.response(prompt, response)?,
                gguf.response(prompt, response)?,
                "response {response:?} to {prompt:?}"
            );
        }
    }
    // Without a system message the folder's jinja template (what transformers and vLLM
    // render) inserts SmolLM2's default system prompt; llama.cpp's built-in ChatML does not.
    // The harness's prompts always carry a system message, so both agree on them.
    let bare = chat(None, "Hi");
    let (with_default, plain) = (hf.prompt(&bare)?, gguf.prompt(&bare)?);
    assert!(
        with_default.len() > plain.len() + 10 && with_default.ends_with(&plain),
        "{with_default:?} vs {plain:?}"
    );
    Ok(())
}
