#!/usr/bin/env bash
# Remakes trainer/tests/fixtures/chat-templates/: real chat templates of widely used model
# families (the copies llama.cpp keeps in models/templates/, written there from each model's
# Hugging Face tokenizer_config.json by its scripts/get_chat_template.py; taken from the
# llama-cpp-python 0.3.16 sdist on PyPI, checksum pinned, since the model hub is not
# reachable here) and expected.json, what transformers' apply_chat_template renders and
# tokenizes for them (scripts/make_chat_template_fixtures.py).
#
#   scripts/make-chat-template-fixtures.sh
#
# First use installs transformers (no torch) into ~/.cache/harness/hf-venv (about 100 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${HARNESS_CACHE:-$HOME/.cache/harness}
venv=$cache/hf-venv
if ! "$venv/bin/python" -c 'import transformers, jinja2, tokenizers' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'transformers==5.25.0' 'jinja2>=3.1.6' tokenizers
fi
sdist=llama_cpp_python-0.3.16.tar.gz
sha=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! echo "$sha  $cache/$sdist" | sha256sum -c --quiet 2>/dev/null; then
  "$venv/bin/pip" download -q --no-deps --no-binary :all: llama-cpp-python==0.3.16 -d "$work"
  echo "$sha  $work/$sdist" | sha256sum -c --quiet
  mv "$work/$sdist" "$cache/$sdist"
fi
out=trainer/tests/fixtures/chat-templates
mkdir -p "$out"
templates=llama_cpp_python-0.3.16/vendor/llama.cpp/models/templates
for name in Qwen-Qwen2.5-7B-Instruct Qwen-Qwen3-0.6B meta-llama-Llama-3.1-8B-Instruct \
    meta-llama-Llama-3.2-3B-Instruct mistralai-Mistral-Nemo-Instruct-2407 google-gemma-2-2b-it \
    microsoft-Phi-3.5-mini-instruct deepseek-ai-DeepSeek-R1-Distill-Qwen-32B \
    CohereForAI-c4ai-command-r7b-12-2024-tool_use; do
  tar xzf "$cache/$sdist" -C "$work" "$templates/$name.jinja"
  cp "$work/$templates/$name.jinja" "$out/"
done
# SmolLM2's template as transformers wrote it from the default model's GGUF.
smollm2=trainer/tests/fixtures/smollm2-tokenizer
cp "$smollm2/chat_template.jinja" "$out/HuggingFaceTB-SmolLM2-135M-Instruct.jinja"
mkdir -p "$work/tokenizer"
cp "$smollm2/tokenizer_config.json" "$smollm2/chat_template.jinja" "$work/tokenizer/"
gunzip -c "$smollm2/tokenizer.json.gz" > "$work/tokenizer/tokenizer.json"
"$venv/bin/python" scripts/make_chat_template_fixtures.py "$work/tokenizer"
(cd "$out" && sha256sum ./*.jinja)
