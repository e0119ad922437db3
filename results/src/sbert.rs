//! The SentenceBERT encoder behind the semantic-diversity metric: all-MiniLM-L6-v2 run with
//! candle-transformers' BERT and the `tokenizers` crate, computed the way the
//! sentence-transformers library does for this model (its modules.json: Transformer with
//! max_seq_length 256, mean pooling over the attention mask, Normalize).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::semantic::Embedder;

/// The files of a sentence-transformers BERT model folder that the encoder reads.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Longest input in tokens, [CLS] and [SEP] included (the model's sentence_bert_config).
pub const MAX_TOKENS: usize = 256;

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl SentenceEncoder {
    /// Loads config.json, tokenizer.json and model.safetensors from a folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = |name: &str| -> PathBuf { dir.join(name) };
        let config_path = file("config.json");
        let config: Config = serde_json::from_str(
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
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        let device = Device::Cpu;
        let weights = file("model.safetensors");
        // SAFETY: the file is memory-mapped read-only; the cache never rewrites it in place
        // (fetches rename a complete file into position).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .with_context(|| format!("reading {}", weights.display()))?;
        let model = BertModel::load(vb, &config)
            .with_context(|| format!("{}: not a BERT model", weights.display()))?;
        Ok(SentenceEncoder {
            model,
            tokenizer,
            device,
            batch_size: 32,
        })
    }

    /// L2-normalised mean-pooled embeddings of the texts, in order. Texts are batched by
    /// length (longest first, as sentence-transformers does) so that batches pad little.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, vector) in chunk.iter().zip(self.encode_batch(&batch)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings.iter().flat_map(|e| f(e).to_vec()).collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, width), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, width), &self.device)?;
        let mask = Tensor::from_vec(
            flat(&|e| e.get_attention_mask()),
            (rows, width),
            &self.device,
        )?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens: padding positions weigh zero.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let pooled = summed.broadcast_div(&counts)?;
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        Ok(pooled.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

impl Embedder for SentenceEncoder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.encode(texts)
    }
}
