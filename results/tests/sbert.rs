//! The SentenceBERT encoder against the sentence-transformers library: embeddings of a
//! fixed set of texts (fixtures/sbert_reference.json, made by scripts/make_sbert_fixture.py)
//! must have cosine similarity above 0.999 with the library's, text by text; and the
//! crate's own BERT forward pass must agree with candle-transformers' BertModel.

use backends::models::{ALL_MINILM_L6_V2, ensure_all};
use results::{SentenceEncoder, semantic_diversity};
use serde_json::Value;

fn encoder() -> SentenceEncoder {
    let files = ensure_all(&ALL_MINILM_L6_V2).expect("fetching all-MiniLM-L6-v2");
    SentenceEncoder::load(files[0].parent().unwrap()).expect("loading the encoder")
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y.powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The fixture: the texts and sentence-transformers' vectors of them.
fn fixture() -> (Vec<String>, Vec<Vec<f64>>) {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/sbert_reference.json")).unwrap();
    let texts = fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let reference: Vec<Vec<f64>> = fixture["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    (texts, reference)
}

#[test]
fn embeddings_match_sentence_transformers() {
    let (texts, reference) = fixture();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encoder = encoder();
    let ours = encoder.encode(&texts).unwrap();
    assert_eq!(ours.len(), texts.len());
    let mut worst = f64::MAX;
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert_eq!(a.len(), 384);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
        let c = cosine(a, b);
        assert!(
            c > 0.999,
            "text {i} ({:?}...): cosine {c}",
            &texts[i][..texts[i].len().min(30)]
        );
        worst = worst.min(c);
    }
    eprintln!("lowest cosine with sentence-transformers: {worst:.7}");

    // Batching and padding do not change a text's embedding: each text alone gives the
    // same vector as inside the batch.
    for (i, text) in texts.iter().enumerate() {
        let alone = encoder.encode(&[text]).unwrap().remove(0);
        let diff = alone
            .iter()
            .zip(&ours[i])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "text {i}: alone differs by {diff}");
    }

    // Near-duplicate solutions are closer than unrelated texts: diversity orders them.
    let similar = semantic_diversity(&[&ours[0], &ours[1]]).unwrap();
    let unrelated = semantic_diversity(&[&ours[0], &ours[4]]).unwrap();
    assert!(similar < unrelated, "{similar} vs {unrelated}");
}

/// Mean-pooled, normalised embeddings from candle-transformers' BertModel, one text at a
/// time (no padding).
fn candle_embeddings(texts: &[&str]) -> Vec<Vec<f32>> {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::bert::{BertModel, Config};
    let files = ensure_all(&ALL_MINILM_L6_V2).unwrap();
    let dir = files[0].parent().unwrap();
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = Device::Cpu;
    // SAFETY: the cached model file is not modified while the test runs.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &device)
    }
    .unwrap();
    let model = BertModel::load(vb, &config).unwrap();
    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 256,
            ..Default::default()
        }))
        .unwrap();
    // tokenizer.json pads to a fixed 128 tokens: one text at a time needs no padding.
    tokenizer.with_padding(None);
    texts
        .iter()
        .map(|text| {
            let encoding = tokenizer.encode(*text, true).unwrap();
            let ids = Tensor::new(encoding.get_ids(), &device)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let types = ids.zeros_like().unwrap();
            let mask = ids.ones_like().unwrap();
            let hidden = model.forward(&ids, &types, Some(&mask)).unwrap();
            let mean = hidden.mean(1).unwrap().squeeze(0).unwrap();
            let norm = mean.sqr().unwrap().sum_all().unwrap().sqrt().unwrap();
            mean.broadcast_div(&norm).unwrap().to_vec1::<f32>().unwrap()
        })
        .collect()
}

#[test]
fn forward_pass_matches_candle_transformers_bert() {
    let (texts, _) = fixture();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ours = encoder().encode(&texts).unwrap();
    let theirs = candle_embeddings(&texts);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "text {i}: largest difference {diff}");
    }
}
