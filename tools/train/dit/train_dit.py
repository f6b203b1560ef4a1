#!/usr/bin/env python3
"""Trains tern-demo-dit, a class-conditional DiT (dit_model.py) on the packed Fashion-MNIST subset
(fmnist.py) in pixel space, on one CUDA GPU. Seeded; epsilon prediction with the plain MSE loss
(fixed variance, learn_sigma false), linear beta schedule, label dropout to the null class for
classifier-free guidance, AdamW at a constant learning rate after a linear warm-up, an EMA of the
weights (the EMA is what gets saved), bf16 autocast with float32 master weights.

  python3 tools/train/dit/train_dit.py --data .fmnist/fmnist.xz --out models/tern-demo-dit

The learning rate does not depend on the run's length, so a run stopped by --max-train-seconds
after N steps is the same run as `--steps N` (up to GPU kernels that are not bit-deterministic).
Writes into --out: model.safetensors (float16 EMA weights), config.json, training_log.json."""
import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402
import fmnist  # noqa: E402
import st_io  # noqa: E402
from dit_model import DiT  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".fmnist/fmnist.xz")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--ema", type=float, default=0.9995)
    ap.add_argument("--label-dropout", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--max-train-seconds", type=float, default=1e9,
                    help="stop after this much training time; the log records the steps reached")
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--limit", type=int, default=0, help="use only this many training images (smoke tests)")
    return ap.parse_args()


def model_config(a):
    return {
        "architecture": "DiT",
        "image_size": 32,
        "in_channels": 1,
        "patch_size": a.patch,
        "hidden_size": a.hidden,
        "depth": a.depth,
        "num_heads": a.heads,
        "mlp_ratio": a.mlp_ratio,
        "num_classes": 10,
        "null_class": 10,
        "learn_sigma": False,
        "frequency_embedding_size": 256,
        "layernorm_eps": 1e-6,
        "mlp_activation": "gelu_tanh",
        "prediction_type": "epsilon",
        "noise_schedule": {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                           "num_train_timesteps": 1000},
        "input": {"data": "Fashion-MNIST", "pixel_range": [-1, 1], "padding": "28x28 centred in 32x32, border -1",
                  "classes": fmnist.CLASSES},
    }


def save_model(model, cfg, out, extra_meta):
    os.makedirs(out, exist_ok=True)
    sd = {k: v.detach().to(torch.float16).cpu().numpy() for k, v in model.state_dict().items()}
    st_io.save(os.path.join(out, "model.safetensors"), sd, {"format": "pt", **extra_meta})
    cfg = dict(cfg)
    cfg["parameters"] = int(sum(v.size for k, v in sd.items() if k != "pos_embed"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"   # the CPU only for smoke tests
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    d = fmnist.load_packed(a.data)
    n = a.limit or len(d["train_y"])
    x_all = torch.from_numpy(fmnist.to_model_space(d["train_x"][:n])).to(dev)
    y_all = torch.from_numpy(d["train_y"][:n].astype(np.int64)).to(dev)
    cfg = model_config(a)
    model = DiT(cfg).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"DiT: {nparam} parameters, {n} training images, batch {a.batch}", flush=True)
    abar = torch.tensor(diffusion.make_schedule(cfg["noise_schedule"]), dtype=torch.float32, device=dev)
    T = abar.numel()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embedder" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), **({"fused": True} if dev == "cuda" else {}))
    gen = torch.Generator(device=dev).manual_seed(a.seed)

    def loss_fn(x0, t, noise, y):
        ab = abar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            pred = model(xt, t.float(), y)
        return F.mse_loss(pred.float(), noise)

    step_fn = torch.compile(loss_fn) if a.compile and dev == "cuda" else loss_fn
    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    log = {"args": vars(a), "parameters": nparam, "steps": [],
           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
           "torch": torch.__version__}
    t_start = time.time()
    t_train = 0.0
    running, count = 0.0, 0
    step = 0
    while step < a.steps:
        t0 = time.time()
        idx = torch.randint(0, n, (a.batch,), device=dev, generator=gen)
        t = torch.randint(0, T, (a.batch,), device=dev, generator=gen)
        noise = torch.randn((a.batch, 1, 32, 32), device=dev, generator=gen)
        drop = torch.rand(a.batch, device=dev, generator=gen) < a.label_dropout
        y = torch.where(drop, torch.full_like(y_all[idx], cfg["null_class"]), y_all[idx])
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        try:
            loss = step_fn(x_all[idx], t, noise, y)
        except Exception as e:  # a torch.compile failure: same arithmetic, eager
            if step_fn is loss_fn:
                raise
            print(f"torch.compile failed ({type(e).__name__}: {e}); continuing eager", flush=True)
            log["compile_failed"] = str(e)[:500]
            step_fn = loss_fn
            loss = step_fn(x_all[idx], t, noise, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        dcy = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema_params, dcy)
            torch._foreach_add_(ema_params, model_params, alpha=1.0 - dcy)
        step += 1
        running += loss.detach()
        count += 1
        if step % a.log_every == 0 or step == a.steps:
            if dev == "cuda":
                torch.cuda.synchronize()
            l = (running / count).item()
            t_train += time.time() - t0
            rec = {"step": step, "loss": l, "lr": lr, "grad_norm": float(gnorm), "train_s": round(t_train, 2),
                   "wall_s": round(time.time() - t_start, 2)}
            log["steps"].append(rec)
            print(f"step {step} loss {l:.4f} lr {lr:.2e} gnorm {float(gnorm):.3f} train {t_train:.1f} s "
                  f"({step * a.batch / max(t_train, 1e-9):.0f} img/s)", flush=True)
            running, count = 0.0, 0
            if t_train >= a.max_train_seconds:
                print(f"stopping at step {step}: --max-train-seconds {a.max_train_seconds} reached", flush=True)
                break
        else:
            t_train += time.time() - t0
    if dev == "cuda":
        torch.cuda.synchronize()
    log["steps_done"] = step
    log["train_seconds"] = t_train
    log["wall_seconds"] = time.time() - t_start
    log["images_seen"] = step * a.batch
    save_model(ema, cfg, a.out, {"steps": str(step), "weights": "ema"})
    with open(os.path.join(a.out, "training_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(f"saved {a.out}: {step} steps, {step * a.batch} images, {t_train:.1f} s of training", flush=True)


if __name__ == "__main__":
    main()
