"""Makes trainer/tests/fixtures/chat-templates/expected.json: what transformers'
apply_chat_template renders and tokenizes for each real chat template in that folder, so that
trainer/tests/chat_templates.rs can check the trainer renders and tokenizes them the same.

Each template is rendered with the special tokens of its model family (set on the tokenizer,
so that a token the family lacks is undefined in the template, as transformers passes it) and
tokenized with SmolLM2's tokenizer.json (the other families' tokenizers are on the model hub,
which this machine cannot reach; the ids check the path from text to ids, which is the same for
every tokenizer: no special tokens added). Dates (strftime_now) are frozen at 2024-07-26 12:00;
the test sets SOURCE_DATE_EPOCH to the same instant.

Usage: python scripts/make_chat_template_fixtures.py TOKENIZER_FOLDER
(in a virtual environment with transformers; scripts/make-chat-template-fixtures.sh makes it).
"""

import datetime as _datetime
import json
import os
import sys

import transformers
from transformers import AutoTokenizer
from transformers.utils import chat_template_utils

FIXTURES = "trainer/tests/fixtures/chat-templates"

# template file -> special tokens of the family (None: the family has none).
FAMILIES = {
    "HuggingFaceTB-SmolLM2-135M-Instruct.jinja": ("<|im_start|>", "<|im_end|>"),
    "Qwen-Qwen2.5-7B-Instruct.jinja": (None, "<|im_end|>"),
    "Qwen-Qwen3-0.6B.jinja": (None, "<|im_end|>"),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("<s>", "</s>"),
    "google-gemma-2-2b-it.jinja": ("<bos>", "<eos>"),
    "microsoft-Phi-3.5-mini-instruct.jinja": ("<s>", "<|endoftext|>"),
    # Command R7B's tool_use template: the one of these whose output depends on
    # trim_blocks/lstrip_blocks, and that uses {% break %}.
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": (
        "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
        "<\uff5cend\u2581of\u2581sentence\uff5c>",
    ),
}

SYSTEM = "You are a careful math tutor. Solve the problem step by step, then give the final answer after \"####\"."
USER = "  Tom has 3 boxes of 12 pencils.\nHe gives away 7. How many are left?  Ünïcödé\tand tabs.\n"
ANSWER = "3 * 12 = 36 pencils.\n36 - 7 = 29.\n#### 29"

CASES = [
    ("system+user, generation prompt", [("system", SYSTEM), ("user", USER)], True),
    ("system+user, no generation prompt", [("system", SYSTEM), ("user", USER)], False),
    ("user, generation prompt", [("user", USER)], True),
    ("system+user+assistant", [("system", SYSTEM), ("user", USER), ("assistant", ANSWER)], False),
]


class FrozenDatetime(_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2024, 7, 26, 12, 0, 0)


# A post-processor that adds BOS (SmolLM2's <|im_start|>, id 1) to every sequence, as Llama's
# and Gemma's tokenizer.json have; SmolLM2's own adds nothing.
BOS_POST_PROCESSOR = {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [
        {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
        {"Sequence": {"id": "A", "type_id": 0}},
        {"Sequence": {"id": "B", "type_id": 1}},
    ],
    "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}},
}


def plain_text_with_bos(tokenizer_folder):
    """A raw-text prompt's ids as transformers' tokenizer(text) (and vLLM's /v1/completions,
    add_special_tokens=True) gives them with a tokenizer whose post-processor adds BOS."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for name in os.listdir(tokenizer_folder):
            shutil.copy(os.path.join(tokenizer_folder, name), folder)
        path = os.path.join(folder, "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            tokenizer = json.load(f)
        tokenizer["post_processor"] = BOS_POST_PROCESSOR
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tokenizer, f)
        tok = AutoTokenizer.from_pretrained(folder)
        text = "Question: " + USER + "Answer:"
        return {"post_processor": BOS_POST_PROCESSOR, "text": text, "ids": tok(text)["input_ids"]}


def main():
    chat_template_utils.datetime = FrozenDatetime
    tokenizer_folder = sys.argv[1]
    out = []
    for name, (bos, eos) in FAMILIES.items():
        with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
            template = f.read()
        tok = AutoTokenizer.from_pretrained(tokenizer_folder)
        tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token = bos, eos, None, None
        special = dict(tok.special_tokens_map)
        cases = []
        for label, turns, generation in CASES:
            messages = [{"role": r, "content": c} for r, c in turns]
            case = {"case": label, "messages": messages, "add_generation_prompt": generation}
            try:
                case["text"] = tok.apply_chat_template(
                    messages, chat_template=template, add_generation_prompt=generation, tokenize=False
                )
                case["ids"] = tok.apply_chat_template(
                    messages,
                    chat_template=template,
                    add_generation_prompt=generation,
                    tokenize=True,
                    return_dict=False,
                )
            except Exception as e:  # the template refuses (raise_exception): the trainer must too
                case["error"] = str(e)
            cases.append(case)
        rendered = sum("text" in c for c in cases)
        print(f"{name}: {rendered}/{len(cases)} rendered, special tokens {special}")
        out.append({"template": name, "special_tokens": special, "cases": cases})
    doc = {
        "plain_text_with_bos": plain_text_with_bos(tokenizer_folder),
        "made_by": f"transformers {transformers.__version__} apply_chat_template "
        "(scripts/make_chat_template_fixtures.py)",
        "date": "2024-07-26T12:00:00 (strftime_now frozen)",
        "families": out,
    }
    with open(os.path.join(FIXTURES, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
