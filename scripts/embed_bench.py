"""Builds the benchmark texts or times sentence-transformers on them (scripts/bench-embed.sh).

    python embed_bench.py texts MODEL_DIR OUT.json COUNT TOKENS   # GSM8K solutions cut to TOKENS
    python embed_bench.py time MODEL_DIR TEXTS.json BATCH REPEATS THREADS
"""
import gzip
import json
import sys
import time
from pathlib import Path


def load_model(model_dir):
    from sentence_transformers import SentenceTransformer, models
    transformer = models.Transformer(model_dir, max_seq_length=256)
    dimension = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")


def make_texts(model_dir, out, count, tokens):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = Path(__file__).resolve().parent.parent / "benchmarks/data/gsm8k/train.jsonl.gz"
    answers = [json.loads(line)["answer"] for line in gzip.open(data, "rt")]
    texts, i = [], 0
    while len(texts) < count:
        # Consecutive solutions joined until the text has TOKENS tokens, then cut there.
        text = ""
        while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < tokens:
            text += answers[i % len(answers)] + "\n"
            i += 1
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        texts.append(tokenizer.decode(ids))
    Path(out).write_text(json.dumps(texts))


def time_it(model_dir, texts_path, batch, repeats, threads):
    import torch
    torch.set_num_threads(threads)
    texts = json.loads(Path(texts_path).read_text())
    model = load_model(model_dir)
    model.encode(texts[:batch], batch_size=batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = model.encode(texts, batch_size=batch, convert_to_numpy=True)
        assert len(vectors) == len(texts)
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"engine": "sentence-transformers", "texts": len(texts), "seconds": best,
                      "texts_per_second": len(texts) / best}))


if __name__ == "__main__":
    if sys.argv[1] == "texts":
        make_texts(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        time_it(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
