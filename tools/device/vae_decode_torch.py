#!/usr/bin/env python3
"""Baseline for tern-vae-bench: the VAE decode (AutoencoderKL.decode) of latent DiT latents in PyTorch.

  python3 tools/device/vae_decode_torch.py --vae DIR/vae [--dtype bfloat16] [--latent-sizes 32,64]
      [--batches 1,16] [--iters 10] [--json out.json]

diffusers' AutoencoderKL when diffusers is importable, else the plain-torch decoder of
tools/train/dit/latent_reference.py with scaled_dot_product_attention for the mid block; eager, on
the GPU, TF32 off. Times are CUDA-synchronized wall clock per decode, host latents in and host
images out (as tern-vae-bench measures), after two untimed decodes.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "dit"))
from latent_reference import VaeDecoder  # noqa: E402


class FastDecoder(VaeDecoder):
    def __init__(self, vae_dir, dtype):
        super().__init__(vae_dir)
        self.sd = {k: v.to("cuda", dtype) for k, v in self.sd.items()}

    def attention(self, p, x):
        n, c, hh, ww = x.shape
        h = self.norm(p + "group_norm", x, silu=False).reshape(n, c, hh * ww).transpose(1, 2)

        def proj(name, old, v):
            key = p + name if p + name + ".weight" in self.sd else p + old
            w = self.sd[key + ".weight"]
            return F.linear(v, w.reshape(w.shape[0], -1), self.sd[key + ".bias"])

        q, k, v = (proj(a, b, h)[:, None] for a, b in (("to_q", "query"), ("to_k", "key"), ("to_v", "value")))
        a = F.scaled_dot_product_attention(q, k, v)[:, 0]
        return x + proj("to_out.0", "proj_attn", a).transpose(1, 2).reshape(n, c, hh, ww)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vae", required=True)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--latent-sizes", default="32,64")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_grad_enabled(False)
    try:
        import diffusers
        model = diffusers.AutoencoderKL.from_pretrained(args.vae).to("cuda", dtype).eval()
        scale = model.config.scaling_factor
        decode = lambda z: model.decode(z / scale).sample  # noqa: E731
        what = f"diffusers {diffusers.__version__} AutoencoderKL"
    except ImportError:
        plain = FastDecoder(args.vae, dtype)
        decode = plain.decode
        what = "plain-torch AutoencoderKL decoder (diffusers not installed), SDPA attention"
    channels = json.load(open(os.path.join(args.vae, "config.json"))).get("latent_channels", 4)
    print(f"PyTorch {torch.__version__} {what} on {torch.cuda.get_device_name()}, {args.dtype}, eager")
    print(f"{'latent':>8} {'batch':>6} | {'ms/decode':>12} {'ms/image':>12}")
    results = []
    for latent in [int(v) for v in args.latent_sizes.split(",")]:
        for batch in [int(v) for v in args.batches.split(",")]:
            host = torch.randn(batch, channels, latent, latent)
            for _ in range(2):
                decode(host.to("cuda", dtype)).float().cpu()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.iters):
                decode(host.to("cuda", dtype)).float().cpu()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - start) * 1e3 / args.iters
            print(f"{latent:>5}x{latent:<2} {batch:>6} | {ms:12.3f} {ms / batch:12.3f}")
            results.append({"latent": latent, "batch": batch, "ms_per_decode": ms, "ms_per_image": ms / batch})
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bench": "torch_vae_decode", "what": what, "device": torch.cuda.get_device_name(),
                       "dtype": args.dtype, "torch": torch.__version__, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
