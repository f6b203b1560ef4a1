#!/usr/bin/env python3
"""Baseline for tern-dit-bench: one DiT-XL/2-shaped forward pass (a denoising step) in PyTorch.

  python3 tools/device/dit_torch_step.py [--dtype bfloat16] [--batches 1,8,64] [--tokens 256,1024] \
      [--iters 20] [--compile] [--json out.json]

The network is tools/train/dit/dit_model.py's DiT (the demo's training code: the original DiT's blocks,
scaled_dot_product_attention) at hidden 1152, depth 28, 16 heads, patch 2, 4 latent channels,
learn_sigma, 1000 classes, random weights; batch = forward rows, as tern-dit-bench counts them (a
guided image is 2 rows). Eager by default; --compile wraps the model in torch.compile. Times are
CUDA-synchronized wall clock per forward, inputs already on the device.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "dit"))
from dit_model import DiT  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--tokens", default="256,1024")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.backends.cuda.matmul.allow_tf32 = False
    results = []
    print(f"PyTorch {torch.__version__} DiT-XL/2 step on {torch.cuda.get_device_name()}, {args.dtype}, "
          f"{'torch.compile' if args.compile else 'eager'}; batch = forward rows")
    print(f"{'tokens':>6} {'batch':>5} | {'ms/step':>9}")
    for tokens in [int(v) for v in args.tokens.split(",")]:
        grid = int(round(tokens ** 0.5))
        cfg = dict(image_size=2 * grid, in_channels=4, patch_size=2, hidden_size=1152, depth=28, num_heads=16,
                   mlp_ratio=4.0, num_classes=1000, learn_sigma=True, frequency_embedding_size=256)
        torch.manual_seed(0)
        model = DiT(cfg)
        with torch.no_grad():  # adaLN-Zero zeros would make every block the identity
            for p in model.parameters():
                p.uniform_(-0.02, 0.02)
        model = model.to("cuda", dtype).eval()
        run = torch.compile(model) if args.compile else model
        for batch in [int(v) for v in args.batches.split(",")]:
            x = torch.randn(batch, 4, 2 * grid, 2 * grid, device="cuda", dtype=dtype)
            t = (torch.arange(batch, device="cuda") * 37 % 1000).to(dtype)
            y = torch.arange(batch, device="cuda") % 1001
            with torch.no_grad():
                for _ in range(3):
                    run(x, t, y)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(args.iters):
                    run(x, t, y)
                torch.cuda.synchronize()
            ms = (time.perf_counter() - start) * 1e3 / args.iters
            print(f"{tokens:>6} {batch:>5} | {ms:9.3f}")
            results.append({"tokens": tokens, "batch_rows": batch, "step_ms": ms})
        del model, run
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bench": "dit_torch_step", "device": torch.cuda.get_device_name(), "dtype": args.dtype,
                       "mode": "compile" if args.compile else "eager", "torch": torch.__version__,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
