#!/usr/bin/env python3
"""Searches DiTFastAttn attention plans for the demo DiT (PyTorch; the GPU machine, or the CPU).

A plan says, for every sampler step and block, what the block's self-attention does (the file
format and the methods: runtime/dit/dit_attention_plan.h): full; window (band attention of
--window keys on each side of a query over the token order, plus the residual full - window that
the layer cached at its last full step); reuse (the layer's attention output of the previous step,
after the projection); full+cfg and window+cfg (computed for the conditional half of classifier-free
guidance only, the unconditional half takes the conditional half's output).

The greedy rule of the DiTFastAttn paper, on calibration images (seeds 900000 + 100 c + j,
disjoint from tools/eval/eval_dit.py's 100000 + 100 c + j): the sampler runs step by step on the
plan chosen so far (its trajectory and caches are the compressed model's); step 0 is full. At step
i > 0 the guided noise prediction with every block full is the reference; then block by block, in
order, each candidate (full+cfg, window, window+cfg, reuse: least to most compressing) is tried
with the earlier blocks' choices in place, and the block keeps the most compressing candidate whose
error, mean |eps - eps_ref| / mean |eps_ref|, stays under the block's share of the threshold
(block b of D: threshold * (b + 1) / D, so the error budget grows through the network as the
paper's per-block targets do). The step is then run with its chosen methods, writing the caches.

Writes OUT_DIR/plan-THRESHOLD.json (tern's form, with how it was searched as metadata) per
threshold and OUT_DIR/search.json (per threshold: methods' shares, attention work kept, the final
images' error against the exact sampler on the calibration seeds).

  python3 tools/dit_fastattn/search_plan.py --out-dir /tmp/dit-fastattn \\
      [--thresholds 0.025,0.05,0.1,0.2] [--steps 20] [--guidance 3] [--window 32] \\
      [--per-class 4] [--device cuda] [--check-bin BIN_DIR]

--check-bin runs BIN_DIR/tern-dit-sample (tern's pipeline on the CPU ops) under each plan on one
calibration image a class and compares its pixels with this file's PyTorch implementation of the
same plan: the check that a plan means the same in both (search.json: check_max_pixel_diff,
check_mismatched_pixels; fp32 both sides, so a few pixels one level apart at most).

The sampler, steps and guidance must be the ones the plans will serve with (tools/device/
dit_quality.sh: dpmpp2m, 20 steps, guidance 3): a plan is for one step count.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "train", "dit"))

import diffusion  # noqa: E402
from loading import load_dit  # noqa: E402

CANDIDATES = ["full+cfg", "window", "window+cfg", "reuse"]
CALIBRATION_SEED_BASE = 900000


class FastAttention(torch.nn.Module):
    """A block's attention following per-step methods over a batch whose first half is the
    conditional rows and second half the unconditional ones (diffusion.guided_eps's order)."""

    def __init__(self, attn, window, tokens):
        super().__init__()
        self.attn = attn
        idx = torch.arange(tokens)
        self.register_buffer("band", (idx[:, None] - idx[None, :]).abs() <= window, persistent=False)
        self.method = "full"
        self.write_caches = True
        self.residual = None  # [2N, heads, L, head_dim] before the projection
        self.output = None    # [2N, L, D] after the projection

    def _qkv(self, x):
        n, l, d = x.shape
        h = self.attn.heads
        qkv = self.attn.qkv(x).reshape(n, l, 3, h, d // h).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def _project(self, o):
        n, h, l, hd = o.shape
        return self.attn.proj(o.transpose(1, 2).reshape(n, l, h * hd))

    def forward(self, x):
        m = self.method
        n = x.shape[0]
        if m == "reuse":
            return self.output
        share = m.endswith("+cfg") and n % 2 == 0
        rows = x[: n // 2] if share else x
        q, k, v = self._qkv(rows)
        if m.startswith("full"):
            o = F.scaled_dot_product_attention(q, k, v)
            if self.write_caches:
                r = o - F.scaled_dot_product_attention(q, k, v, attn_mask=self.band.to(q.device))
                self.residual = torch.cat([r, r]) if share else r
        else:
            w = F.scaled_dot_product_attention(q, k, v, attn_mask=self.band.to(q.device))
            o = w + self.residual[: rows.shape[0]]
        out = self._project(o)
        if share:
            out = torch.cat([out, out])
        if self.write_caches:
            self.output = out
        return out


def install(model, window):
    tokens = model.grid * model.grid
    layers = []
    for block in model.blocks:
        fast = FastAttention(block.attn, window, tokens)
        block.attn = fast
        layers.append(fast)
    return layers


def guided(model, x, t, y, null_class, guidance):
    return diffusion.guided_eps(model, x, t, y, null_class, guidance)


def relative_error(a, b):
    return float((a - b).abs().mean() / b.abs().mean().clamp_min(1e-12))


@torch.no_grad()
def run(model, layers, noise, y, *, steps, guidance, abar, null_class, plan=None, threshold=None):
    """The dpmpp2m sampler (diffusion.sample's arithmetic) with the attention following `plan`
    ([step][layer] methods), or searching it (plan None: the greedy rule at `threshold`).
    Returns (x0, plan)."""
    ts = diffusion.sample_timesteps(len(abar), steps)
    alpha = [math.sqrt(abar[t]) for t in ts] + [1.0]
    sigma = [math.sqrt(1.0 - abar[t]) for t in ts] + [0.0]
    lam = [math.log(a / s) if s > 0 else math.inf for a, s in zip(alpha, sigma)]
    depth = len(layers)
    chosen = [] if plan is None else plan
    x, prev_x0 = noise, None
    for i, t in enumerate(ts):
        if plan is None:
            methods = ["full"] * depth
            if i > 0:
                for layer in layers:
                    layer.write_caches = False
                    layer.method = "full"
                reference = guided(model, x, t, y, null_class, guidance)
                for b, layer in enumerate(layers):
                    budget = threshold * (b + 1) / depth
                    for m in CANDIDATES:
                        layer.method = m
                        if m.endswith("+cfg") and guidance == 1.0:
                            continue
                        err = relative_error(guided(model, x, t, y, null_class, guidance), reference)
                        if err <= budget:
                            methods[b] = m
                    layer.method = methods[b]
            chosen.append(methods)
        for layer, m in zip(layers, chosen[i]):
            layer.method = m
            layer.write_caches = True
        eps = guided(model, x, t, y, null_class, guidance)
        x0 = ((x - sigma[i] * eps) / alpha[i]).clamp(-1.0, 1.0)
        last = i == len(ts) - 1
        if i > 0 and not last:
            r = (lam[i] - lam[i - 1]) / (lam[i + 1] - lam[i])
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        else:
            d = x0
        if last:
            x = d
        else:
            ratio = sigma[i + 1] / sigma[i]
            x = ratio * x + (alpha[i + 1] - alpha[i] * ratio) * d
        prev_x0 = x0
    return x, chosen


def attention_fraction(plan, window, tokens):
    band = sum(min(tokens - 1, i + window) - max(0, i - window) + 1 for i in range(tokens)) / tokens / tokens
    work, count = 0.0, 0
    depth = len(plan[0])
    for s, row in enumerate(plan):
        for l, m in enumerate(row):
            w = 0.0 if m == "reuse" else band if m.startswith("window") else 1.0
            if m.startswith("full") and any(r[l].startswith("window") for r in plan[s + 1:]):
                nxt = next((r[l] for r in plan[s + 1:] if r[l].startswith(("full", "window"))), "")
                if nxt.startswith("window"):
                    w += band
            if m.endswith("+cfg"):
                w *= 0.5
            work += w
            count += 1
    return work / max(count, 1)


def check_against_tern(args, model, layers, plan, path, cfg, abar, null_class):
    """One calibration image a class through tern-dit-sample under the plan file, against this
    file's PyTorch plan-following sampler on the same seeds."""
    classes = cfg["num_classes"]
    out = os.path.join(args.out_dir, "check.u8")
    if args.check_bin.endswith(".sh"):
        cmd = [args.check_bin, "bin/tern-dit-sample"]
    else:
        cmd = [os.path.join(args.check_bin, "tern-dit-sample")]
    cmd += ["--model", args.model, "--sampler", "dpmpp2m", "--steps", str(args.steps), "--guidance",
            str(args.guidance), "--classes", f"0-{classes - 1}", "--per-class", "1", "--seed-base",
            str(CALIBRATION_SEED_BASE), "--seed-stride", "100", "--attention-plan", path, "--out", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    shape = (cfg["in_channels"], cfg["image_size"], cfg["image_size"])
    tern = np.fromfile(out, dtype=np.uint8).reshape((classes,) + shape)
    seeds = [CALIBRATION_SEED_BASE + 100 * c for c in range(classes)]
    noise = diffusion.batch_noise(seeds, shape).to(args.device)
    labels = torch.arange(classes, device=args.device)
    x, _ = run(model, layers, noise, labels, plan=plan, steps=args.steps, guidance=args.guidance, abar=abar,
               null_class=null_class)
    torch_pixels = diffusion.to_uint8(x)
    diff = np.abs(tern.astype(np.int32) - torch_pixels.astype(np.int32))
    return {"check_max_pixel_diff": int(diff.max()), "check_mismatched_pixels": int((diff > 0).sum()),
            "check_pixels": int(diff.size)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "tern-demo-dit"))
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--thresholds", default="0.025,0.05,0.1,0.2")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--window", type=int, default=32, help="keys on each side of a query in window steps")
    ap.add_argument("--per-class", type=int, default=4, help="calibration images a class")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--check-bin", default="", help="a build's bin/ with tern-dit-sample (or a bundle's run.sh)")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    model, cfg = load_dit(args.model, device=args.device)
    null_class = cfg["null_class"]
    abar = diffusion.make_schedule(cfg["noise_schedule"])
    layers = install(model, args.window)
    tokens = model.grid * model.grid
    classes = cfg["num_classes"]
    seeds = [CALIBRATION_SEED_BASE + 100 * c + j for c in range(classes) for j in range(args.per_class)]
    labels = torch.tensor([c for c in range(classes) for _ in range(args.per_class)], device=args.device)
    shape = (cfg["in_channels"], cfg["image_size"], cfg["image_size"])
    noise = diffusion.batch_noise(seeds, shape).to(args.device)
    common = dict(steps=args.steps, guidance=args.guidance, abar=abar, null_class=null_class)

    exact, _ = run(model, layers, noise, labels, plan=[["full"] * len(layers)] * args.steps, **common)
    summary = {"model": args.model, "steps": args.steps, "sampler": "dpmpp2m", "guidance": args.guidance,
               "window": args.window, "calibration_seeds": f"{CALIBRATION_SEED_BASE} + 100 c + j, j < {args.per_class}",
               "device": args.device, "plans": []}
    for threshold in [float(v) for v in args.thresholds.split(",") if v]:
        begin = time.time()
        _, plan = run(model, layers, noise, labels, threshold=threshold, **common)
        seconds = time.time() - begin
        compressed, _ = run(model, layers, noise, labels, plan=plan, **common)
        image_error = relative_error(compressed, exact)
        flat = [m for row in plan for m in row]
        shares = {m: flat.count(m) / len(flat) for m in ["full"] + CANDIDATES}
        fraction = attention_fraction(plan, args.window, tokens)
        metadata = {"searched_by": "tools/dit_fastattn/search_plan.py", "threshold": threshold,
                    "sampler": "dpmpp2m", "guidance": args.guidance,
                    "calibration_images": len(seeds), "error_metric": "mean |eps - eps_ref| / mean |eps_ref|, "
                    "guided eps, block b of D allowed threshold * (b + 1) / D",
                    "image_relative_l1_vs_exact": image_error, "attention_fraction": fraction}
        doc = {"format": "tern-dit-attention-plan", "version": 1, "steps": args.steps, "layers": len(layers),
               "window": args.window, "metadata": metadata, "methods": plan}
        path = os.path.join(args.out_dir, f"plan-{threshold:g}.json")
        with open(path, "w") as f:
            f.write(json.dumps({k: v for k, v in doc.items() if k != "methods"})[:-1])
            f.write(', "methods": [\n' + ",\n".join("  " + json.dumps(row) for row in plan) + "\n]}\n")
        print(f"threshold {threshold:g}: {path}; " + ", ".join(f"{m} {100 * s:.0f}%" for m, s in shares.items())
              + f"; attention work kept {fraction:.3f}; images' relative L1 vs exact {image_error:.4f}"
              f" ({seconds:.1f} s)")
        entry = {"threshold": threshold, "path": path, "shares": shares, "attention_fraction": fraction,
                 "image_relative_l1_vs_exact": image_error, "search_seconds": seconds}
        if args.check_bin:
            entry.update(check_against_tern(args, model, layers, plan, path, cfg, abar, null_class))
            print(f"  tern-dit-sample under the plan vs PyTorch: max pixel difference {entry['check_max_pixel_diff']}, "
                  f"{entry['check_mismatched_pixels']} of {entry['check_pixels']} pixels differ")
        summary["plans"].append(entry)
    with open(os.path.join(args.out_dir, "search.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
