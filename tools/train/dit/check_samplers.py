#!/usr/bin/env python3
"""Checks diffusion.py against closed forms (CPU, float64, a few seconds):
  1. data = one fixed image x*: the exact eps is (x - alpha_t x*) / sigma_t, and both samplers must
     return x* from any noise;
  2. data ~ N(0, s^2) per pixel: the probability-flow ODE maps x_T to
     x_T * sqrt(s^2) / sqrt(alpha_T^2 s^2 + sigma_T^2) at t = 0 (sigma_0 -> 0 limit); DDIM's error
     must halve from 50 to 100 steps and DPM-Solver++(2M)'s fall about 4x;
  3. the noise generator: fixed values, mean ~0 and variance ~1;
  4. classifier-free guidance: g = 1 equals the conditional prediction, g = 0 the unconditional.
Exits non-zero on the first failure.

  python3 tools/train/dit/check_samplers.py"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402

SCHED = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000}
ABAR = diffusion.make_schedule(SCHED)


class Oracle(torch.nn.Module):
    """eps of a known data distribution; class 0 = point mass at x_star, class 1 = N(0, s^2)."""

    def __init__(self, x_star, s):
        super().__init__()
        self.x_star, self.s = x_star, s

    def eps(self, x, t, y):
        ab = torch.tensor(ABAR, dtype=x.dtype)[t.long()].view(-1, 1, 1, 1)
        a, sg = ab.sqrt(), (1 - ab).sqrt()
        point = (x - a * self.x_star) / sg
        gauss = sg * x / (ab * self.s ** 2 + (1 - ab))
        return torch.where((y == 0).view(-1, 1, 1, 1), point, gauss)


def check(cond, msg):
    if not cond:
        print("FAIL:", msg)
        sys.exit(1)
    print("ok:", msg)


def main():
    torch.manual_seed(0)
    x_star = torch.rand(1, 1, 32, 32, dtype=torch.float64) * 1.6 - 0.8
    oracle = Oracle(x_star, 0.5)
    noise = torch.randn(4, 1, 32, 32, dtype=torch.float64)
    for sampler in ("ddim", "dpmpp2m"):
        for steps in (2, 10, 50):
            out = diffusion.sample(oracle, noise, torch.zeros(4, dtype=torch.long), sampler=sampler, steps=steps,
                                   guidance=1.0, schedule=ABAR, null_class=10)
            err = (out - x_star).abs().max().item()
            check(err < 1e-9, f"{sampler} {steps} steps recovers a point mass (max error {err:.2e})")

    # N(0, s^2): exact ODE endpoint from t = T-1 to the clean sample.
    s = 0.5
    a_T, s_T = math.sqrt(ABAR[-1]), math.sqrt(1 - ABAR[-1])
    exact = noise * s / math.sqrt(a_T ** 2 * s ** 2 + s_T ** 2)
    errs = {}
    for sampler in ("ddim", "dpmpp2m"):
        for steps in (25, 50, 100):
            out = diffusion.sample(oracle, noise, torch.ones(4, dtype=torch.long), sampler=sampler, steps=steps,
                                   guidance=1.0, schedule=ABAR, null_class=10, clip_x0=False)
            errs[sampler, steps] = (out - exact).abs().max().item() / exact.abs().max().item()
    print("relative endpoint errors:", {f"{k[0]}@{k[1]}": f"{v:.2e}" for k, v in errs.items()})
    # Uniform timesteps on the linear schedule make the last log-SNR steps long, so the orders show
    # from about 50 steps on.
    check(errs["dpmpp2m", 50] < errs["ddim", 50], "DPM-Solver++(2M) is closer than DDIM at 50 steps")
    r_ddim = errs["ddim", 50] / errs["ddim", 100]
    r_dpm = errs["dpmpp2m", 50] / errs["dpmpp2m", 100]
    check(1.7 < r_ddim < 2.3, f"DDIM error halves from 50 to 100 steps (ratio {r_ddim:.2f})")
    check(3.4 < r_dpm < 4.6, f"DPM-Solver++(2M) error drops about 4x from 50 to 100 steps (ratio {r_dpm:.2f})")

    n = diffusion.gaussian_noise(1, (1, 32, 32)).astype(np.float64)
    check(abs(n.mean()) < 0.1 and abs(n.var() - 1) < 0.15, f"noise mean {n.mean():.3f} variance {n.var():.3f}")
    big = diffusion.gaussian_noise(7, (200000,)).astype(np.float64)
    check(abs(big.mean()) < 0.01 and abs(big.var() - 1) < 0.01, f"200k draws: mean {big.mean():.4f} var {big.var():.4f}")
    check(np.array_equal(diffusion.gaussian_noise(5, (3, 7)), diffusion.gaussian_noise(5, (3, 7))), "noise is seeded")
    check(not np.array_equal(diffusion.gaussian_noise(5, (8,)), diffusion.gaussian_noise(6, (8,))), "seeds differ")
    z = diffusion.splitmix64(0, 3)
    check([int(v) for v in z] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F],
          "SplitMix64 from state 0 matches its published first outputs")

    x = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 0])

    class TwoWay(torch.nn.Module):
        def eps(self, x, t, y):
            return torch.where((y == 0).view(-1, 1, 1, 1), x * 2.0, x * -1.0)

    e1 = diffusion.guided_eps(TwoWay(), x, 500, y, 10, 1.0)
    e0 = diffusion.guided_eps(TwoWay(), x, 500, y, 10, 0.0)
    e3 = diffusion.guided_eps(TwoWay(), x, 500, y, 10, 3.0)
    check(torch.allclose(e1, 2 * x) and torch.allclose(e0, -x) and torch.allclose(e3, -x + 3 * 3 * x),
          "guidance g: eps_u + g (eps_c - eps_u)")
    check(diffusion.sample_timesteps(1000, 4) == [999, 666, 333, 0], "timesteps for 4 steps")
    print("all checks passed")


if __name__ == "__main__":
    main()
