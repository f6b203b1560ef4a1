#!/usr/bin/env python3
"""How far Hugging Face transformers' own low-precision logits move when one
legitimate implementation choice changes.

For each model directory: transformers in the given dtype on the GPU
(default attention, default PyTorch settings) decodes greedily from a fixed
prompt; that run's logits are the baseline. Each variant then replays the
same tokens (teacher-forced, one token per forward with the KV cache, as
`generate` does) with one thing changed, and is scored against the baseline
with the metric of compare_hf.py (max |a - b| / max |b| per step, worst
step) and by how many steps pick a different greedy token. The variants:

  loop           the replay itself, unchanged (must be 0: checks the harness)
  eager          attn_implementation="eager" (softmax in the dtype, P V in it)
  sdpa-math      SDPA's math backend (fp32 softmax, P not rounded)
  no-rpr         cuBLAS without reduced-precision reductions
  rope-1         RoPE rounded once (fp32 products) instead of per product
  rope-fp32      RoPE with fp32 cos/sin, rounded once
  norm-1         RMSNorm's weight product in fp32, rounded once
  silu-1         SiLU(gate) * up in fp32, rounded once
  float32        the model in float32: the exact reference

Every variant is an implementation transformers or PyTorch ships or a
rounding point moved; the spread among them is the noise floor that any
other implementation's agreement with transformers has to be read against.

  python3 tools/device/bf16_spread.py --dtype bfloat16 --steps 32 MODEL_DIR...
"""
import argparse
import contextlib
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_runs import free, generate, greedy_flips, load, replay, step_errors  # noqa: E402


def modeling_module(model):
    return sys.modules[type(model).__module__]


def find_class(module, suffix):
    return next((v for k, v in vars(module).items() if k.endswith(suffix) and isinstance(v, type)), None)


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_once(q, k, cos, sin, *args, **kwargs):
    cos, sin = cos.unsqueeze(1).float(), sin.unsqueeze(1).float()
    rot = lambda x: (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype)
    return rot(q), rot(k)


def variant_context(name, model):
    module = modeling_module(model)
    if name == "sdpa-math":
        return sdpa_kernel([SDPBackend.MATH])
    if name == "no-rpr":
        return patched(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", False)
    if name == "rope-1":
        return patched(module, "apply_rotary_pos_emb", rope_once)
    if name == "rope-fp32":
        rotary = find_class(module, "RotaryEmbedding")
        original = rotary.forward

        def fp32_forward(self, x, position_ids):
            return original(self, x.float(), position_ids)
        stack = contextlib.ExitStack()
        stack.enter_context(patched(rotary, "forward", fp32_forward))
        stack.enter_context(patched(module, "apply_rotary_pos_emb", rope_once))
        return stack
    if name == "norm-1":
        norm = find_class(module, "RMSNorm")

        def forward(self, x):
            xf = x.float()
            xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return (self.weight.float() * xf).to(x.dtype)
        return patched(norm, "forward", forward)
    if name == "silu-1":
        mlp = find_class(module, "MLP")
        if mlp is None:
            return None

        def forward(self, x):
            return self.down_proj((F.silu(self.gate_proj(x).float()) * self.up_proj(x).float()).to(x.dtype))
        return patched(mlp, "forward", forward)
    return contextlib.nullcontext()


def score(got, base):
    return max(step_errors(got, base)), greedy_flips(got, base)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--json")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    results = []
    for model_dir in args.models:
        vocab = json.load(open(os.path.join(model_dir, "config.json")))["vocab_size"]
        prompt = torch.randint(0, vocab, (24,), generator=torch.Generator().manual_seed(5)).tolist()
        model = load(model_dir, dtype)
        tokens, base = generate(model, prompt, args.steps)
        rows = {}
        for name in ["loop", "sdpa-math", "no-rpr", "rope-1", "rope-fp32", "norm-1", "silu-1"]:
            context = variant_context(name, model)
            if context is None:
                continue
            try:
                with context:
                    rows[name] = score(replay(model, prompt, tokens), base)
            except RuntimeError as error:  # a backend that does not take this model's shapes
                print(f"  {name}: {str(error).splitlines()[0]}")
        del model
        for name, attn, variant_dtype in [("eager", "eager", dtype), ("float32", "sdpa", torch.float32)]:
            other = load(model_dir, variant_dtype, attn)
            rows[name] = score(replay(other, prompt, tokens), base)
            del other
        free()
        label = os.path.basename(os.path.normpath(model_dir))
        print(f"{label} ({args.dtype}, {args.steps + 1} steps): max rel err against transformers' default, "
              f"steps whose greedy token differs")
        for name, (err, flips) in rows.items():
            print(f"  {name:15s} {err:.2e}  {flips}")
        results.append({"model": label, "dtype": args.dtype, "steps": args.steps + 1,
                        "variants": {k: {"max_rel_error": v[0], "greedy_flips": v[1]} for k, v in rows.items()}})
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
