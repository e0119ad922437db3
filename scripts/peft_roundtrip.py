"""Loads adapters written by `harness train` with PEFT and compares logits (scripts/peft-roundtrip.sh).

    python scripts/peft_roundtrip.py data DIR            writes DIR/sft.jsonl and DIR/dpo.jsonl
    python scripts/peft_roundtrip.py check M0.gguf OUT...

For each OUT (a `harness train --export-hf` output folder): M0 is loaded with transformers from
its GGUF (dequantized to float32), OUT/adapter is applied with `PeftModel.from_pretrained`
(which fails on a `target_modules` PEFT cannot match), and its logits on a few chat prompts are
compared with the harness's own merged model, OUT/hf, loaded with transformers. Prints, per
adapter, the LoRA modules PEFT found, max |PEFT - merged| and max |PEFT - M0| (the adapter's
own effect), and exits non-zero when the first exceeds BOUND or is not far below the second.
"""

import json
import os
import sys

BOUND = 0.05
SYSTEM = "Solve the problem. End with the answer after \"####\"."
NAMES = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal"]


def question(i):
    a, b = 3 + i, 5 + 2 * i
    return f"{NAMES[i % 8]} has {a} apples and buys {b} more. How many apples now?", a + b


def write_data(folder):
    with open(os.path.join(folder, "sft.jsonl"), "w") as sft, open(os.path.join(folder, "dpo.jsonl"), "w") as dpo:
        for i in range(16):
            text, answer = question(i)
            prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
            right = f"{answer - (5 + 2 * i)} + {5 + 2 * i} = {answer}.\n#### {answer}"
            wrong = f"{answer - (5 + 2 * i)} + {5 + 2 * i} = {answer + 3}.\n#### {answer + 3}"
            sft.write(json.dumps({"prompt": prompt, "completion": right}) + "\n")
            dpo.write(json.dumps({"prompt": prompt, "chosen": right, "rejected": wrong}) + "\n")


def old_form_is_refused(folder, name, out):
    """The adapter with `"target_modules": ["all-linear"]` (what the harness used to write):
    PEFT matches a list entry as a module name and finds none. Shows the check can fail."""
    import shutil
    import tempfile

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        adapter = os.path.join(tmp, "adapter")
        shutil.copytree(os.path.join(out, "adapter"), adapter)
        path = os.path.join(adapter, "adapter_config.json")
        with open(path) as f:
            config = json.load(f)
        config["target_modules"] = ["all-linear"]
        with open(path, "w") as f:
            json.dump(config, f)
        base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        try:
            PeftModel.from_pretrained(base, adapter)
        except Exception as e:  # PEFT's NoMatchingPeftModuleError (a ValueError)
            print(f'target_modules ["all-linear"] (a list): PEFT refuses: {type(e).__name__}: {str(e)[:90]}')
            return True
    print('target_modules ["all-linear"] (a list): PEFT loaded it: FAILED')
    return False


def check(gguf, outs):
    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    folder, name = os.path.split(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    prompts = []
    for i in (1, 9, 20):
        text, _ = question(i)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        prompts.append(torch.tensor([ids]))

    def logits(model):
        model.eval()
        with torch.no_grad():
            return [model(ids).logits[0].float() for ids in prompts]

    failed = not old_form_is_refused(folder, name, outs[0])
    for out in outs:
        base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        before = logits(base)
        with open(os.path.join(out, "adapter", "adapter_config.json")) as f:
            targets = json.load(f)["target_modules"]
        peft = PeftModel.from_pretrained(base, os.path.join(out, "adapter"))
        modules = sum(1 for n, _ in peft.named_modules() if n.endswith("lora_A"))
        with_adapter = logits(peft)
        merged = logits(AutoModelForCausalLM.from_pretrained(os.path.join(out, "hf"), dtype=torch.float32))
        diff = max((a - b).abs().max().item() for a, b in zip(with_adapter, merged))
        effect = max((a - b).abs().max().item() for a, b in zip(with_adapter, before))
        ok = diff <= BOUND and diff * 10 < effect
        failed |= not ok
        print(
            f"{os.path.basename(out)}: target_modules {targets}, {modules} LoRA modules loaded by PEFT; "
            f"max |PEFT - harness merged| {diff:.4f}, max |PEFT - M0| {effect:.3f} "
            f"({sum(p.shape[1] for p in prompts)} positions x "
            f"{merged[0].shape[1]} logits) {'ok' if ok else 'FAILED'}",
            flush=True,
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if sys.argv[1] == "data":
        write_data(sys.argv[2])
    else:
        check(sys.argv[2], sys.argv[3:])
