"""Noise schedule, seeded Gaussian noise and the two deterministic samplers of tern-demo-dit
(DDIM with eta 0 and DPM-Solver++(2M)), written so that a C++ runtime can reproduce them exactly;
models/tern-demo-dit/README.md restates every formula.

Schedule: betas = linspace(beta_start, beta_end, T) in float64, abar_t = prod_{s<=t} (1 - beta_s),
alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), lambda_t = log(alpha_t / sigma_t). The model
predicts epsilon: x_t = alpha_t * x0 + sigma_t * eps.
"""
import math

import numpy as np
import torch

MASK64 = (1 << 64) - 1


def make_schedule(cfg):
    """cfg: the config.json "noise_schedule" dict -> float64 numpy abar [T]."""
    if cfg["beta_schedule"] != "linear":
        raise ValueError("only the linear beta schedule is implemented")
    betas = np.linspace(cfg["beta_start"], cfg["beta_end"], cfg["num_train_timesteps"], dtype=np.float64)
    return np.cumprod(1.0 - betas)


def sample_timesteps(num_train_timesteps, steps):
    """The `steps` model-evaluation timesteps, descending: t_i = (T-1)*(steps-1-i) // (steps-1),
    integer arithmetic (so 999 ... 0 for T = 1000). steps >= 2."""
    if steps < 2:
        raise ValueError("steps must be >= 2")
    return [(num_train_timesteps - 1) * (steps - 1 - i) // (steps - 1) for i in range(steps)]


def splitmix64(seed, n):
    """n uint64 draws of the SplitMix64 generator started at state `seed`: state += 0x9E3779B97F4A7C15,
    then z = state; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB;
    out = z ^ z>>31 (all mod 2^64)."""
    k = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed & MASK64) + k * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def gaussian_noise(seed, shape):
    """Standard normal float32 array of `shape` from one seed, reproducible in any language:
    2*ceil(n/2) SplitMix64 draws z_k -> u_k = ((z_k >> 11) + 0.5) / 2^53 in (0, 1); pairs
    (u_{2j}, u_{2j+1}) give r = sqrt(-2 ln u_{2j}), element 2j = r cos(2 pi u_{2j+1}),
    element 2j+1 = r sin(2 pi u_{2j+1}), in float64, then rounded to float32; row-major fill."""
    n = int(np.prod(shape))
    m = (n + 1) // 2
    z = splitmix64(seed, 2 * m)
    u = ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    r = np.sqrt(-2.0 * np.log(u[0::2]))
    th = 2.0 * math.pi * u[1::2]
    out = np.empty(2 * m, dtype=np.float64)
    out[0::2] = r * np.cos(th)
    out[1::2] = r * np.sin(th)
    return out[:n].astype(np.float32).reshape(shape)


def batch_noise(seeds, shape):
    """[len(seeds), *shape] float32 tensor, one gaussian_noise(seed, shape) per image."""
    return torch.from_numpy(np.stack([gaussian_noise(s, shape) for s in seeds]))


def guided_eps(model, x, t, y, null_class, guidance):
    """Classifier-free guidance: eps_u + g * (eps_c - eps_u) (g = 1: conditional only, one pass)."""
    tt = torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
    if guidance == 1.0:
        return model.eps(x, tt, y)
    both = model.eps(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, torch.full_like(y, null_class)]))
    e_c, e_u = both.chunk(2)
    return e_u + guidance * (e_c - e_u)


@torch.no_grad()
def sample(model, noise, y, *, sampler, steps, guidance, schedule, null_class, clip_x0=True):
    """Runs `sampler` ("ddim" or "dpmpp2m") from noise [N, C, H, W] (at t = T-1) for class ids y [N];
    returns x0 in [-1, 1] (float, the dtype and device of `noise`).

    Both use the same timesteps t_0 > ... > t_{S-1} (sample_timesteps) plus a final point
    t_S with alpha = 1, sigma = 0. At t_i: eps = guided eps; x0_i = (x - sigma_i eps) / alpha_i,
    clipped to [-1, 1] when clip_x0. Update to t_{i+1} with D:
      x <- (sigma_{i+1}/sigma_i) x + (alpha_{i+1} - alpha_i sigma_{i+1}/sigma_i) D
    (== DDIM eta 0 with eps recomputed from the clipped x0, == DPM-Solver++ first order).
    DDIM: D = x0_i. DPM-Solver++(2M): D = x0_i at i = 0 and on the last step; otherwise with
    h_i = lambda_{i+1} - lambda_i and r = h_{i-1} / h_i: D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}.
    The last step (sigma_{i+1} = 0) returns D."""
    if sampler not in ("ddim", "dpmpp2m"):
        raise ValueError(f"unknown sampler {sampler}")
    abar = schedule
    ts = sample_timesteps(len(abar), steps)
    alpha = [math.sqrt(abar[t]) for t in ts] + [1.0]
    sigma = [math.sqrt(1.0 - abar[t]) for t in ts] + [0.0]
    lam = [math.log(a / s) if s > 0 else math.inf for a, s in zip(alpha, sigma)]
    x = noise
    prev_x0 = None
    for i, t in enumerate(ts):
        eps = guided_eps(model, x, t, y, null_class, guidance)
        x0 = (x - sigma[i] * eps) / alpha[i]
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        last = i == len(ts) - 1
        if sampler == "dpmpp2m" and i > 0 and not last:
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
    return x


def to_uint8(x):
    """[-1, 1] float -> uint8 numpy: clip(floor((x + 1) * 127.5 + 0.5), 0, 255)."""
    return torch.clamp(torch.floor((x.double() + 1.0) * 127.5 + 0.5), 0, 255).to(torch.uint8).cpu().numpy()
