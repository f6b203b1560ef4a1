#!/usr/bin/env python3
"""Trains fmnist-classifier on the packed Fashion-MNIST subset (fmnist.py) and reports its accuracy
on the whole 10000-image test set. Seeded; one CUDA GPU (or the CPU, slowly).

  python3 tools/train/dit/train_classifier.py --data .fmnist/fmnist.xz --out models/fmnist-classifier

Writes model.safetensors (float32, the BatchNorm running statistics included), config.json and
training_log.json into --out."""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402
import st_io  # noqa: E402
from classifier import FmnistClassifier  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".fmnist/fmnist.xz")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--limit", type=int, default=0, help="use only this many training images (smoke tests)")
    return ap.parse_args()


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    right = 0
    for i in range(0, len(x), batch):
        right += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return right / len(x)


def shift_augment(x, gen):
    """Random translation by up to 2 pixels in each direction (zero-padded in [-1,1] space: -1)."""
    n = x.shape[0]
    xp = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx = torch.randint(0, 5, (n,), generator=gen, device="cpu").to(x.device)
    dy = torch.randint(0, 5, (n,), generator=gen, device="cpu").to(x.device)
    rows = (dy[:, None] + torch.arange(32, device=x.device)[None, :])           # [n, 32]
    cols = (dx[:, None] + torch.arange(32, device=x.device)[None, :])
    xp = xp[torch.arange(n, device=x.device)[:, None, None], 0, rows[:, :, None], cols[:, None, :]]
    return xp[:, None]


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    d = fmnist.load_packed(a.data)
    n = a.limit or len(d["train_y"])
    xtr = torch.from_numpy(fmnist.to_model_space(d["train_x"][:n])).to(dev)
    ytr = torch.from_numpy(d["train_y"][:n].astype(np.int64)).to(dev)
    xte = torch.from_numpy(fmnist.to_model_space(d["test_x"])).to(dev)
    yte = torch.from_numpy(d["test_y"].astype(np.int64)).to(dev)
    model = FmnistClassifier().to(dev)
    steps_per_epoch = (n + a.batch - 1) // a.batch
    total = a.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total, pct_start=0.15)
    gen = torch.Generator().manual_seed(a.seed)
    log = {"args": vars(a), "epochs": [], "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
           "torch": torch.__version__}
    t0 = time.time()
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        tot = 0.0
        for i in range(steps_per_epoch):
            b = perm[i * a.batch:(i + 1) * a.batch]
            loss = F.cross_entropy(model(shift_augment(xtr[b], gen)), ytr[b], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
        acc = accuracy(model, xte, yte)
        log["epochs"].append({"epoch": ep, "loss": tot / steps_per_epoch, "test_acc": acc, "time_s": time.time() - t0})
        print(f"classifier epoch {ep} loss {tot / steps_per_epoch:.4f} test acc {acc:.4f} ({time.time() - t0:.1f} s)",
              flush=True)
    log["train_seconds"] = time.time() - t0
    log["test_accuracy"] = accuracy(model, xte, yte)
    log["train_accuracy"] = accuracy(model, xtr, ytr)
    os.makedirs(a.out, exist_ok=True)
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    st_io.save(os.path.join(a.out, "model.safetensors"), sd, {"format": "pt"})
    cfg = {"architecture": "fmnist-classifier", "input": [1, 32, 32], "input_range": [-1, 1],
           "num_classes": 10, "classes": fmnist.CLASSES, "feature_dim": 128, "batchnorm_eps": 1e-5,
           "parameters": int(sum(p.numel() for p in model.parameters())),
           "test_accuracy": log["test_accuracy"]}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(a.out, "training_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(f"classifier: test accuracy {log['test_accuracy']:.4f}, train {log['train_accuracy']:.4f},"
          f" {log['train_seconds']:.1f} s -> {a.out}", flush=True)


if __name__ == "__main__":
    main()
