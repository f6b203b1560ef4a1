#!/usr/bin/env python3
"""Compares tern's logits with Hugging Face transformers on the same weights.

For each model directory and prompt: transformers in the given dtype on the
GPU (its default SDPA attention) decodes greedily from the prompt; that is
the peer. tern (`tern-run --backend cuda --dump-logits`) then runs twice:

  free      its own greedy decode: how many greedy tokens equal the peer's,
            and the error over that common prefix;
  forced    fed the peer's tokens (teacher forcing): the error on every
            step, and on how many steps its greedy pick differs ("flips").

error = max |a - b| / max |b| per step, worst step ("max"); the normwise
||a - b||_2 / ||b||_2 is reported beside it ("l2"). The literal bound: max
error < --bound on every step and every greedy token identical.

Two references, on the same forced tokens, put the bound in scale:
  hf eager  transformers' other attention implementation (attn_implementation
            "eager"): how far the peer moves by itself when only its
            attention kernel changes;
  fp32      transformers in float32, the exact logits. Against them tern,
            transformers (SDPA) and transformers (eager) each get an error
            and a flip count: how accurate each low-precision
            implementation is.
"accuracy" holds for a model when, over its prompts, tern's worst error
against fp32 is at most 1.25 times the worse of transformers' two, and its
flips against fp32 are no more than the more of theirs. Exits non-zero when
a model misses the literal bound, or with --accept-accuracy when it misses
the accuracy criterion.

  python3 tools/device/compare_hf.py --tern-run BIN --dtype bfloat16 --steps 32 [--prompts 3] MODEL_DIR...

Prompts are random token ids (24), or with --text FILE the first lines of
FILE that the model's own tokenizer (transformers' AutoTokenizer) turns into
at least 32 tokens, cut to 32: for a trained model, whose next-token
distribution on real text has clear winners.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_runs  # noqa: E402


def tern_logits(tern_run, model_dir, dtype, prompt, steps, forced=None):
    """tern's greedy tokens and per-step logits (forced: fed these tokens)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as dump:
        command = shlex.split(tern_run) + ["--model", os.path.abspath(model_dir), "--backend", "cuda",
                                           "--dtype", dtype, "--dump-logits", dump.name,
                                           "--token-ids", ",".join(map(str, prompt))]
        command += ["--force-tokens", ",".join(map(str, forced))] if forced else ["--decode-tokens", str(steps)]
        subprocess.run(command, check=True)
        steps_out = json.load(open(dump.name))["steps"]
    return [s["token"] for s in steps_out], [torch.tensor(s["logits"]) for s in steps_out]


def compare_prompt(args, model_dir, dtype, prompt):
    model = hf_runs.load(model_dir, dtype)
    hf_tokens, hf = hf_runs.generate(model, prompt, args.steps)
    del model
    eager_model = hf_runs.load(model_dir, dtype, attn="eager")
    eager = hf_runs.replay(eager_model, prompt, hf_tokens)
    del eager_model
    fp32_model = hf_runs.load(model_dir, torch.float32)
    fp32 = hf_runs.replay(fp32_model, prompt, hf_tokens)
    del fp32_model
    hf_runs.free()

    free_tokens, free_logits = tern_logits(args.tern_run, model_dir, args.dtype, prompt, args.steps)
    same = 0
    while same < min(len(free_tokens), len(hf_tokens)) and free_tokens[same] == hf_tokens[same]:
        same += 1
    _, forced = tern_logits(args.tern_run, model_dir, args.dtype, prompt, args.steps, forced=hf_tokens[:-1])
    r = {"free_identical": same,
         "free_error": max(hf_runs.step_errors(free_logits[:same + 1], hf[:same + 1]))}
    for name, logits in [("tern", forced), ("eager", eager)]:
        r[f"{name}_error"] = max(hf_runs.step_errors(logits, hf))
        r[f"{name}_l2"] = max(hf_runs.step_l2_errors(logits, hf))
        r[f"{name}_flips"] = hf_runs.greedy_flips(logits, hf)
    for name, logits in [("tern", forced), ("hf", hf), ("eager", eager)]:
        r[f"{name}_vs_fp32"] = max(hf_runs.step_errors(logits, fp32))
        r[f"{name}_fp32_flips"] = hf_runs.greedy_flips(logits, fp32)
    return r


def prompts_for(model_dir, args):
    """args.prompts token-id prompts for the model: random ids, or real text."""
    if args.text:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        prompts = []
        for line in open(args.text, encoding="utf-8"):
            ids = tokenizer(line.strip())["input_ids"]
            if len(ids) >= 32:
                prompts.append(ids[:32])
            if len(prompts) == args.prompts:
                break
        return prompts
    vocab = json.load(open(os.path.join(model_dir, "config.json")))["vocab_size"]
    generator = torch.Generator().manual_seed(5)
    return [torch.randint(0, vocab, (24,), generator=generator).tolist() for _ in range(args.prompts)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern-run", required=True, help="command that runs tern-run (may include a wrapper)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=1, help="random 24-token prompts per model")
    parser.add_argument("--bound", type=float, default=1e-2)
    parser.add_argument("--accept-accuracy", action="store_true",
                        help="exit status from the accuracy criterion instead of the literal bound")
    parser.add_argument("--text", help="take prompts from this text file's lines (trained models)")
    parser.add_argument("--json")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    results, ok = [], True
    print(f"{'model':24s} {'free':>6s} | {'tern vs hf: max':>15s} {'l2':>8s} {'flips':>5s} | "
          f"{'eager vs hf: max':>16s} {'l2':>8s} {'flips':>5s} | vs fp32: {'tern':>8s} {'hf':>8s} {'eager':>8s} "
          f"{'flips t/h/e':>11s} | bound")
    for model_dir in args.models:
        rows = []
        for p, prompt in enumerate(prompts_for(model_dir, args)):
            r = compare_prompt(args, model_dir, dtype, prompt)
            r["bound_ok"] = (r["tern_error"] < args.bound and r["tern_flips"] == 0
                             and r["free_identical"] >= args.steps + 1)
            label = os.path.basename(os.path.normpath(model_dir)) + (f" #{p}" if args.prompts > 1 else "")
            r.update({"model": label, "dtype": args.dtype, "steps": args.steps + 1, "prompt": prompt})
            rows.append(r)
            print(f"{label:24s} {r['free_identical']:>3d}/{args.steps + 1:<2d} | {r['tern_error']:15.2e} "
                  f"{r['tern_l2']:8.2e} {r['tern_flips']:5d} | {r['eager_error']:16.2e} {r['eager_l2']:8.2e} "
                  f"{r['eager_flips']:5d} | {'':9s}{r['tern_vs_fp32']:8.2e} {r['hf_vs_fp32']:8.2e} "
                  f"{r['eager_vs_fp32']:8.2e} {r['tern_fp32_flips']:>4d}/{r['hf_fp32_flips']}/{r['eager_fp32_flips']:<4d} | "
                  f"{'ok' if r['bound_ok'] else 'FAIL'}", flush=True)
        peer_error = max(max(r["hf_vs_fp32"], r["eager_vs_fp32"]) for r in rows)
        tern_error = max(r["tern_vs_fp32"] for r in rows)
        peer_flips = max(sum(r["hf_fp32_flips"] for r in rows), sum(r["eager_fp32_flips"] for r in rows))
        tern_flips = sum(r["tern_fp32_flips"] for r in rows)
        bound_ok = all(r["bound_ok"] for r in rows)
        accuracy_ok = tern_error <= 1.25 * peer_error and tern_flips <= peer_flips
        print(f"  {os.path.basename(os.path.normpath(model_dir))} {args.dtype}: literal bound "
              f"{'ok' if bound_ok else 'FAIL'}; accuracy against fp32: tern {tern_error:.2e} / transformers "
              f"{peer_error:.2e} = {tern_error / max(peer_error, 1e-30):.2f}, flips {tern_flips} / {peer_flips} "
              f"{'ok' if accuracy_ok else 'FAIL'}", flush=True)
        ok &= accuracy_ok if args.accept_accuracy else bound_ok
        for r in rows:
            r.update({"accuracy_ok": accuracy_ok})
        results += rows
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
