//! Times the SentenceBERT encoder on the texts of a JSON file (an array of strings) and
//! prints one JSON line: texts, seconds, texts per second. Used by scripts/bench-embed.sh.
//!
//!     embed_bench MODEL_DIR TEXTS.json BATCH REPEATS

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, texts, batch, repeats] = args.as_slice() else {
        anyhow::bail!("usage: embed_bench MODEL_DIR TEXTS.json BATCH REPEATS");
    };
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(texts)?)?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut encoder = results::SentenceEncoder::load(std::path::Path::new(model))?;
    encoder.batch_size = batch.parse()?;
    // One warm-up batch (page-in of the weights, thread pools).
    encoder.encode(&texts[..encoder.batch_size.min(texts.len())])?;
    let mut best = f64::MAX;
    for _ in 0..repeats.parse::<usize>()? {
        let start = Instant::now();
        let vectors = encoder.encode(&texts)?;
        assert_eq!(vectors.len(), texts.len());
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({"engine": "harness", "texts": texts.len(), "seconds": best,
                           "texts_per_second": texts.len() as f64 / best})
    );
    Ok(())
}
