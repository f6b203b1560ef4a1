#!/usr/bin/env python3
"""Writes golden.json for tern-demo-dit: reference outputs that tern's diffusion runtime is checked
against. Computed from the float16 weights in --model, upcast to --dtype (float64 on the CPU by
default, so the reference carries no rounding of its own).

  python3 tools/train/dit/golden.py --model models/tern-demo-dit --out models/tern-demo-dit/golden.json

Contents (models/tern-demo-dit/README.md describes every field):
  noise_check: the first 8 values and the float64 sum of gaussian_noise(seed 1, [1, 32, 32]);
  forward:     one network evaluation (eps for 2 inputs at fixed t and y), float values;
  samples:     fixed (class, seed, sampler, steps, guidance) cases, final images as uint8 [32*32]."""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402
import loading  # noqa: E402

# (class, seed, sampler, steps, guidance); class 10 is the null class (unconditional).
CASES = [
    (0, 1, "ddim", 10, 1.0),
    (1, 2, "ddim", 20, 3.0),
    (2, 3, "ddim", 50, 3.0),
    (3, 4, "dpmpp2m", 10, 3.0),
    (4, 5, "dpmpp2m", 20, 3.0),
    (5, 6, "dpmpp2m", 20, 1.0),
    (6, 7, "dpmpp2m", 25, 2.0),
    (7, 8, "ddim", 25, 4.0),
    (8, 9, "dpmpp2m", 50, 4.0),
    (9, 10, "ddim", 2, 3.0),
    (10, 11, "dpmpp2m", 20, 1.0),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tern-demo-dit")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    a = ap.parse_args()
    dtype = getattr(torch, a.dtype)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model, cfg = loading.load_dit(a.model, a.device, dtype)
    abar = diffusion.make_schedule(cfg["noise_schedule"])

    n1 = diffusion.gaussian_noise(1, (1, 32, 32))
    out = {
        "model": os.path.basename(os.path.normpath(a.model)),
        "computed_with": f"PyTorch {torch.__version__}, {a.device}, {a.dtype} from the float16 weights",
        "image_layout": "uint8 [32*32] row-major, pixel = clip(floor((x + 1) * 127.5 + 0.5), 0, 255)",
        "noise_check": {"seed": 1, "shape": [1, 32, 32], "first8": [float(v) for v in n1.reshape(-1)[:8]],
                        "sum": float(n1.astype(np.float64).sum())},
    }

    xf = diffusion.batch_noise([42], (2, 1, 32, 32))[0].to(a.device, dtype)
    tf = torch.tensor([500.0, 20.0], device=a.device, dtype=dtype)
    yf = torch.tensor([3, cfg["null_class"]], device=a.device)
    with torch.no_grad():
        eps = model.eps(xf, tf, yf).cpu().double().numpy()
    out["forward"] = {"x": "gaussian_noise(seed 42, [2, 1, 32, 32])", "t": [500, 20], "y": [3, cfg["null_class"]],
                      "eps_shape": [2, 1, 32, 32], "eps": [float(f"{v:.7g}") for v in eps.reshape(-1)]}

    samples = []
    for cls, seed, sampler, steps, g in CASES:
        noise = diffusion.batch_noise([seed], (1, 32, 32)).to(a.device, dtype)
        y = torch.tensor([cls], device=a.device)
        x = diffusion.sample(model, noise, y, sampler=sampler, steps=steps, guidance=g, schedule=abar,
                             null_class=cfg["null_class"])
        xd = x.cpu().double()
        samples.append({"class": cls, "seed": seed, "sampler": sampler, "steps": steps, "guidance": g,
                        "clip_x0": True, "timesteps": diffusion.sample_timesteps(len(abar), steps),
                        "mean": float(xd.mean()), "std": float(xd.std()),
                        "pixels": [int(v) for v in diffusion.to_uint8(x).reshape(-1)]})
        print(f"class {cls} seed {seed} {sampler} {steps} steps g {g}: mean {samples[-1]['mean']:.4f}", flush=True)
    out["samples"] = samples
    with open(a.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
