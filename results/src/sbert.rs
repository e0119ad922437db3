//! The SentenceBERT encoder behind the semantic-diversity metric: all-MiniLM-L6-v2 with the
//! `tokenizers` crate and this crate's BERT forward pass ([`crate::bert`]), computed the way
//! the sentence-transformers library does for this model (its modules.json: Transformer
//! with max_seq_length 256, mean pooling over the attention mask, Normalize).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use tokenizers::{Tokenizer, TruncationParams};

use std::sync::Mutex;

use crate::bert::{Bert, BertConfig, Scratch, Tokens};
use crate::semantic::Embedder;

/// The files of a sentence-transformers BERT model folder that the encoder reads.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Longest input in tokens, [CLS] and [SEP] included (the model's sentence_bert_config).
pub const MAX_TOKENS: usize = 256;

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    model: Bert,
    tokenizer: Tokenizer,
    scratch: Mutex<Scratch>,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl SentenceEncoder {
    /// Loads config.json, tokenizer.json and model.safetensors from a folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = |name: &str| -> PathBuf { dir.join(name) };
        let config_path = file("config.json");
        let config: BertConfig = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?,
        )
        .with_context(|| format!("{}: not a BERT config", config_path.display()))?;
        let tokenizer_path = file("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow!("{}: {e}", tokenizer_path.display()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| anyhow!("{}: {e}", tokenizer_path.display()))?;
        // Inputs go through the model at their own lengths: no padding.
        tokenizer.with_padding(None);
        let model = Bert::load(config, &file("model.safetensors"))?;
        Ok(SentenceEncoder {
            model,
            tokenizer,
            scratch: Mutex::new(Scratch::default()),
            batch_size: 32,
        })
    }

    /// L2-normalised mean-pooled embeddings of the texts, in order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        for batch in texts.chunks(self.batch_size.max(1)) {
            let encodings = self
                .tokenizer
                .encode_batch(batch.to_vec(), true)
                .map_err(|e| anyhow!("tokenizing: {e}"))?;
            let inputs: Vec<Tokens> = encodings
                .iter()
                .map(|e| Tokens {
                    ids: e.get_ids(),
                    types: e.get_type_ids(),
                })
                .collect();
            for mut vector in self.model.mean_pooled(&inputs, &mut scratch)? {
                let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                vector.iter_mut().for_each(|v| *v /= norm);
                out.push(vector);
            }
        }
        Ok(out)
    }
}

impl Embedder for SentenceEncoder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.encode(texts)
    }
}
