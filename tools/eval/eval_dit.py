#!/usr/bin/env python3
"""Evaluates tern-demo-dit with fmnist-classifier: for each sampler configuration, 1000 images
(100 per class; image i has class i // 100 and noise seed --seed-base + i, diffusion.gaussian_noise)
are scored by
  class accuracy: the classifier's argmax equals the requested class (goal >= 80 %),
  FD: Frechet distance between the classifier's 128-d penultimate features of the 1000 images and
      of the 10000 real test images (lower is better).
The floor row scores 1000 real training images (100 per class, from the carried training subset,
seeded) the same way. Prints one table and writes JSON (--json).

  python3 tools/eval/eval_dit.py --model models/tern-demo-dit --classifier models/fmnist-classifier \\
      --data .fmnist/fmnist.xz --json eval.json

Runs on CUDA when present (float32 from the float16 weights, TF32 off), else on the CPU."""
import argparse
import json
import os
import sys
import time
import zlib
import struct

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "dit"))
import diffusion  # noqa: E402
import fmnist  # noqa: E402
import loading  # noqa: E402
from frechet import frechet_distance  # noqa: E402  (tools/eval, this script's folder)

DEFAULT_CONFIGS = ("dpmpp2m:20:3.0,ddim:50:3.0,ddim:20:3.0,dpmpp2m:10:3.0,dpmpp2m:20:2.0,dpmpp2m:20:4.0,"
                   "ddim:50:1.0,dpmpp2m:20:1.0")


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tern-demo-dit")
    ap.add_argument("--classifier", default="models/fmnist-classifier")
    ap.add_argument("--data", default=".fmnist/fmnist.xz")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated sampler:steps:guidance")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed-base", type=int, default=100000)
    ap.add_argument("--floor-seed", type=int, default=99)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--json", default="")
    ap.add_argument("--grid", default="", help="write a PNG sheet (10 per class) of the first config here")
    return ap.parse_args()


@torch.no_grad()
def classify(clf, x, device, batch=2000):
    """x: float [n, 1, 32, 32] in [-1, 1] -> (features [n, 128] numpy, predicted class [n] numpy)."""
    feats, preds = [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(device)
        f = clf.features(xb)
        feats.append(f.cpu().numpy())
        preds.append(clf.fc2(f).argmax(1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(preds)


def quantize(x):
    """Generated float images -> what a viewer sees: uint8 and back to [-1, 1]."""
    return torch.from_numpy(diffusion.to_uint8(x).astype(np.float32) / 127.5 - 1.0)


def write_png(path, img):
    """8-bit greyscale PNG of a uint8 [h, w] array."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    a = parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model, cfg = loading.load_dit(a.model, device)
    clf = loading.load_classifier(a.classifier, device)
    data = fmnist.load_packed(a.data)
    abar = diffusion.make_schedule(cfg["noise_schedule"])
    t0 = time.time()

    test_x = torch.from_numpy(fmnist.to_model_space(data["test_x"]))
    test_feats, test_pred = classify(clf, test_x, device)
    test_acc = float((test_pred == data["test_y"]).mean())

    labels = np.repeat(np.arange(10), a.per_class)
    rng = np.random.default_rng(a.floor_seed)
    floor_idx = np.concatenate([rng.permutation(np.flatnonzero(data["train_y"] == c))[:a.per_class]
                                for c in range(10)])
    floor_x = torch.from_numpy(fmnist.to_model_space(data["train_x"][floor_idx]))
    f_feats, f_pred = classify(clf, floor_x, device)
    rows = [{"name": "real train images (floor)", "sampler": "-", "steps": 0, "guidance": 0.0,
             "class_accuracy": float((f_pred == data["train_y"][floor_idx]).mean()),
             "fd": frechet_distance(f_feats, test_feats), "seconds": 0.0}]

    seeds = [a.seed_base + i for i in range(len(labels))]
    noise_all = diffusion.batch_noise(seeds, (1, 32, 32))
    y_all = torch.from_numpy(labels)
    for spec in a.configs.split(","):
        sampler, steps, g = spec.split(":")
        steps, g = int(steps), float(g)
        ts = time.time()
        outs = []
        for i in range(0, len(labels), a.batch):
            outs.append(diffusion.sample(
                model, noise_all[i:i + a.batch].to(device), y_all[i:i + a.batch].to(device), sampler=sampler,
                steps=steps, guidance=g, schedule=abar, null_class=cfg["null_class"]).cpu())
        if device == "cuda":
            torch.cuda.synchronize()
        sec = time.time() - ts
        imgs = torch.cat(outs)
        feats, pred = classify(clf, quantize(imgs), device)
        per_class = [float((pred[labels == c] == c).mean()) for c in range(10)]
        rows.append({"name": f"{sampler} {steps} steps, guidance {g}", "sampler": sampler, "steps": steps,
                     "guidance": g, "class_accuracy": float((pred == labels).mean()),
                     "per_class_accuracy": per_class, "fd": frechet_distance(feats, test_feats),
                     "seconds": round(sec, 2)})
        print(f"{rows[-1]['name']}: acc {rows[-1]['class_accuracy']:.3f} FD {rows[-1]['fd']:.3f} ({sec:.1f} s)",
              flush=True)
        if a.grid and len(rows) == 2:
            u8 = diffusion.to_uint8(imgs)[:, 0]                                # [1000, 32, 32]
            cols = min(10, a.per_class)
            sheet = np.zeros((10 * 32, cols * 32), np.uint8)
            for c in range(10):
                for j in range(cols):
                    sheet[c * 32:(c + 1) * 32, j * 32:(j + 1) * 32] = u8[c * a.per_class + j]
            write_png(a.grid, sheet)

    result = {
        "model": a.model, "classifier": a.classifier, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__, "images_per_config": len(labels), "per_class": a.per_class,
        "seed_base": a.seed_base, "classifier_test_accuracy": test_acc,
        "fd_reference": "classifier penultimate features (128-d) of the 10000 Fashion-MNIST test images",
        "rows": rows, "seconds": round(time.time() - t0, 1),
    }
    print(f"\nclassifier test accuracy {test_acc:.4f}; FD against the 10000 test images; {len(labels)} images a row")
    print(f"{'configuration':<34} {'class acc':>9} {'FD':>8} {'seconds':>8}")
    for r in rows:
        print(f"{r['name']:<34} {100 * r['class_accuracy']:>8.1f}% {r['fd']:>8.3f} {r['seconds']:>8.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
