#!/usr/bin/env python3
"""Golden outputs of Hugging Face transformers for tern's model tests.

For each model directory (written by tern-mkmodel), loads it with
AutoModelForCausalLM in float32 on the CPU (deterministic), runs fixed token
sequences, and writes JSON with the logits at every position and a 16-step
greedy continuation with the logits of each step, plus the sha256 of the weights so a test can tell that it
regenerated the same model. Run where transformers is installed:

  python3 tools/device/hf_reference.py --out DIR MODEL_DIR...
"""
import argparse
import glob
import hashlib
import json
import os

import torch
import transformers


def sequences(vocab):
    gen = torch.Generator().manual_seed(1234)
    lengths = [1, 5, 19, 40]
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


def weights_sha256(model_dir):
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    for model_dir in args.models:
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.eval()
        vocab = model.config.vocab_size
        cases = []
        for ids in sequences(vocab):
            logits = model(torch.tensor([ids])).logits[0]
            cases.append({"token_ids": ids, "logits": [[float(v) for v in row] for row in logits]})
        prompt = sequences(vocab)[2]
        # The mask is explicit: generate would otherwise mask prompt tokens equal to the pad id.
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=16, do_sample=False, pad_token_id=0, output_logits=True,
                             return_dict_in_generate=True)
        greedy = out.sequences[0][len(prompt):].tolist()
        greedy_logits = [[float(v) for v in step[0]] for step in out.logits]
        name = os.path.basename(os.path.normpath(model_dir))
        result = {"model": name, "architecture": model.config.architectures[0],
                  "transformers": transformers.__version__, "torch": torch.__version__,
                  "weights_sha256": weights_sha256(model_dir), "cases": cases,
                  "greedy": {"prompt": prompt, "continuation": greedy, "logits": greedy_logits}}
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(result, f, separators=(",", ":"))
        print(name, "ok", len(cases), "cases, greedy", greedy)


if __name__ == "__main__":
    main()
