"""Makes trainer/tests/fixtures/smollm2-tokenizer/: SmolLM2-135M-Instruct's tokenizer as a
Hugging Face folder (tokenizer.json.gz, tokenizer_config.json, chat_template.jinja), written by
transformers from the GGUF the embedded engine uses (the model hub is not reachable here).
trainer/tests/hf_tokenizer.rs checks that this folder, read with the tokenizers crate and
its jinja template, gives the token ids llama.cpp gives for the same prompts and responses.

Usage: python scripts/make_hf_tokenizer_fixture.py MODEL.gguf [OUT]
(in a virtual environment with transformers, tokenizers and gguf).
"""

import os
import subprocess
import sys

from transformers import AutoTokenizer


def main():
    gguf = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "trainer/tests/fixtures/smollm2-tokenizer"
    folder, name = os.path.split(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(out)
    # 3.5 MB of JSON, 0.6 MB gzipped; the test unpacks it.
    subprocess.run(["gzip", "-9", "-n", "-f", os.path.join(out, "tokenizer.json")], check=True)
    for file in sorted(os.listdir(out)):
        print(file, os.path.getsize(os.path.join(out, file)))


if __name__ == "__main__":
    main()
