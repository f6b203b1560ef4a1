#!/usr/bin/env python3
"""Compares tern's logits with Hugging Face transformers on the same weights.

For each model directory: runs transformers in the given dtype on the GPU
(prefill of a fixed prompt, then greedy decode steps, logits of every step),
runs `tern-run --backend cuda --dump-logits` on the same prompt, and reports
per-step relative error (max |tern - hf| / max |hf|) and whether the greedy
tokens are identical. Exits non-zero when a model misses the bounds.

It also scores both against transformers in float32 (teacher-forced on each
one's own tokens): "hf vs fp32" is transformers' own rounding error in the
given dtype, the noise floor any bf16/fp16 implementation sits on, and
"tern vs fp32" is tern's.

  python3 tools/device/compare_hf.py --tern-run BIN --dtype bfloat16 --steps 32 MODEL_DIR...
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import torch
import transformers


def hf_steps(model_dir, dtype, prompt, steps):
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).cuda().eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]).cuda(), max_new_tokens=steps + 1, do_sample=False,
                             pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    tokens = out.sequences[0][len(prompt):].tolist()
    logits = [step[0].float().cpu() for step in out.logits]
    del model
    torch.cuda.empty_cache()
    return tokens, logits


def fp32_errors(model_dir, prompt, tokens, logits):
    """Per-step max |logits - fp32| / max |fp32|, fp32 teacher-forced on prompt + tokens."""
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda().eval()
    with torch.no_grad():
        ids = torch.tensor([prompt + tokens[:len(logits) - 1]]).cuda()
        ref = model(ids).logits[0, len(prompt) - 1:].float().cpu()
    del model
    torch.cuda.empty_cache()
    return [float((torch.as_tensor(got) - want).abs().max() / want.abs().max()) for got, want in zip(logits, ref)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern-run", required=True, help="command that runs tern-run (may include a wrapper)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--bound", type=float, default=1e-2)
    parser.add_argument("--json")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    results, ok = [], True
    for model_dir in args.models:
        vocab = json.load(open(os.path.join(model_dir, "config.json")))["vocab_size"]
        gen = torch.Generator().manual_seed(5)
        prompt = torch.randint(0, vocab, (24,), generator=gen).tolist()
        hf_tokens, hf_logits = hf_steps(model_dir, dtype, prompt, args.steps)
        with tempfile.NamedTemporaryFile(suffix=".json") as dump:
            subprocess.run(shlex.split(args.tern_run) + ["--model", os.path.abspath(model_dir), "--backend", "cuda", "--dtype", args.dtype,
                            "--dump-logits", dump.name, "--token-ids", ",".join(map(str, prompt)),
                            "--decode-tokens", str(args.steps)], check=True)
            tern = json.load(open(dump.name))
        tern_tokens = [s["token"] for s in tern["steps"]]
        errors = []
        for step, hf in zip(tern["steps"], hf_logits):
            ours = torch.tensor(step["logits"])
            errors.append(float((ours - hf).abs().max() / hf.abs().max()))
        # Compare logits only while both decoded the same prefix.
        same = 0
        while same < min(len(tern_tokens), len(hf_tokens)) and tern_tokens[same] == hf_tokens[same]:
            same += 1
        max_err = max(errors[:same + 1])
        passed = max_err < args.bound and same >= args.steps + 1
        ok &= passed
        tern_logits = [torch.tensor(step["logits"]) for step in tern["steps"]]
        hf_floor = max(fp32_errors(model_dir, prompt, hf_tokens, hf_logits))
        tern_floor = max(fp32_errors(model_dir, prompt, tern_tokens, tern_logits))
        results.append({"model": os.path.basename(model_dir), "dtype": args.dtype, "max_rel_error": max_err,
                        "greedy_tokens_identical": same, "steps": args.steps + 1, "passed": passed,
                        "hf_vs_fp32": hf_floor, "tern_vs_fp32": tern_floor})
        print(f"{os.path.basename(model_dir):28s} {args.dtype:9s} max rel err {max_err:.2e}  "
              f"identical greedy tokens {same}/{args.steps + 1}  {'ok' if passed else 'FAIL'}  "
              f"hf vs fp32 {hf_floor:.2e}  tern vs fp32 {tern_floor:.2e}")
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
