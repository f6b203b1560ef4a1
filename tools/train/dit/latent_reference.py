#!/usr/bin/env python3
"""PyTorch reference for tern's latent DiTs: one denoising step's model output and one VAE decode,
from a model directory tern-mkmodel --arch dit wrote (either layout), in plain torch following
diffusers' math, in float64; and the comparison of tern's outputs with them.

  python3 tools/train/dit/latent_reference.py --model DIR --out ref.safetensors
  python3 tools/train/dit/latent_reference.py --model DIR --reference ref.safetensors \
      --compare cpu:tern-cpu.safetensors cuda-bfloat16:tern-cuda.safetensors

Inputs (tern-vae-bench --dump makes the same ones): x = gaussian_noise(42, [2, C, h, w]) (diffusion.py's
seeded noise), t = [999, 500], y = [1, the null class]; latents = gaussian_noise(7, [2, C, h, w]).
Outputs: "eps" [2, C, h, w] (the model's first C channels: a learn_sigma model's noise prediction),
"images" [2, 3, H, W] (the VAE decoder's output for latents / scaling_factor, before clamping).

The math, per layout:
- diffusers (DiTTransformer2DModel): every block computes its conditioning from its own
  norm1.emb (timestep features cos|sin with f_i = exp(-ln(1e4) i / (128 - 1)): Timesteps'
  downscale_freq_shift=1), LayerNorm eps 1e-6 before attention (AdaLayerNormZero) and in norm_out,
  norm_eps (1e-5) before the MLP (norm3), q/k/v apart, the final layer conditioned by block 0's
  embedders. diffusers computes the timestep features in float32; here they are float64 (tern:
  float64, rounded to the compute dtype), which moves them by ~6e-5 at t = 999.
- original (facebookresearch/DiT): one conditioning, f_i = exp(-ln(1e4) i / 128), eps 1e-6 everywhere.
- VAE (AutoencoderKL.decode): post_quant_conv, conv_in, mid (ResNet, one-head attention over the
  pixels with GroupNorm first and a residual, ResNet), up blocks (ResNets, nearest 2x + conv),
  GroupNorm + SiLU, conv_out; GroupNorm(norm_num_groups, eps 1e-6).

With --check-diffusers and diffusers importable, the same directory is also loaded into diffusers'
own DiTTransformer2DModel / AutoencoderKL (float64) and compared with these modules.

Tolerances (relative: max |tern - ref| / max |ref|): float32 1e-4, bfloat16 5e-2, float16 1e-2 for
eps and images; the exit status is 1 when one is exceeded.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diffusion import gaussian_noise  # noqa: E402

TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 1e-2}


DEVICE = "cpu"  # --device: where the float64 reference runs


def load_tensors(path):
    try:
        from safetensors.torch import load_file
        return {k: v.to(DEVICE, torch.float64) for k, v in load_file(path).items()}
    except ImportError:
        import st_io
        tensors, _ = st_io.load(path)
        return {k: torch.from_numpy(v.astype(np.float64)).to(DEVICE) for k, v in tensors.items()}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def position_table(dim, grid):
    """2-D sin-cos table [grid*grid, dim]: first half the column, then the row (diffusers'
    get_2d_sincos_pos_embed with base_size = grid, interpolation_scale 1; the original DiT's)."""
    def one_d(d, pos):
        omega = 1.0 / 10000.0 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    emb = np.concatenate([one_d(dim // 2, cols.reshape(-1)), one_d(dim // 2, rows.reshape(-1))], axis=1)
    return torch.from_numpy(emb.astype(np.float32).astype(np.float64)).to(DEVICE)


def timestep_features(t, dim, shift):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=t.device) / (half - shift))
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def linear(sd, name, x, bias=True):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias") if bias else None)


def layer_norm(x, eps):
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def attention(q, k, v, heads):
    n, l, d = q.shape
    q, k, v = (a.reshape(n, l, heads, d // heads).transpose(1, 2) for a in (q, k, v))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(d // heads)
    return (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(n, l, d)


class Dit:
    """The DiT of a model directory, either layout, as plain float64 torch."""

    def __init__(self, model_dir):
        if os.path.exists(os.path.join(model_dir, "model_index.json")):
            self.diffusers = True
            c = read_json(os.path.join(model_dir, "transformer", "config.json"))
            self.sd = load_tensors(os.path.join(model_dir, "transformer", "diffusion_pytorch_model.safetensors"))
            self.heads = c["num_attention_heads"]
            self.hidden = c["num_attention_heads"] * c["attention_head_dim"]
            self.depth = c["num_layers"]
            self.patch = c["patch_size"]
            self.size = c["sample_size"]
            self.channels = c["in_channels"]
            self.out_channels = c.get("out_channels") or c["in_channels"]
            self.num_classes = c["num_embeds_ada_norm"]
            self.mlp_eps = c.get("norm_eps", 1e-5)
        else:
            self.diffusers = False
            c = read_json(os.path.join(model_dir, "config.json"))
            self.sd = load_tensors(os.path.join(model_dir, "model.safetensors"))
            self.heads = c["num_heads"]
            self.hidden = c["hidden_size"]
            self.depth = c["depth"]
            self.patch = c["patch_size"]
            self.size = c.get("input_size", c.get("image_size"))
            self.channels = c["in_channels"]
            self.out_channels = self.channels * (2 if c.get("learn_sigma") else 1)
            self.num_classes = c["num_classes"]
            self.mlp_eps = 1e-6
        self.grid = self.size // self.patch

    def conditioning(self, prefix_t, prefix_y, features, y):
        sd = self.sd
        if self.diffusers:
            h = F.silu(linear(sd, prefix_t + ".linear_1", features))
            emb = linear(sd, prefix_t + ".linear_2", h)
        else:
            h = F.silu(linear(sd, prefix_t + ".mlp.0", features))
            emb = linear(sd, prefix_t + ".mlp.2", h)
        return emb + sd[prefix_y][y]

    def forward(self, x, t, y):
        sd, d, p = self.sd, self.hidden, self.patch
        n = x.shape[0]
        shift = 1 if self.diffusers else 0
        features = timestep_features(t, 256, shift)
        patch = "pos_embed.proj" if self.diffusers else "x_embedder.proj"
        tok = F.conv2d(x, sd[patch + ".weight"], sd[patch + ".bias"], stride=p).flatten(2).transpose(1, 2)
        stored = sd.get("pos_embed.pos_embed" if self.diffusers else "pos_embed")
        tok = tok + (stored.reshape(1, -1, d) if stored is not None else position_table(d, self.grid)[None])
        if not self.diffusers:
            cond = self.conditioning("t_embedder", "y_embedder.embedding_table.weight", features, y)
        for i in range(self.depth):
            if self.diffusers:
                b = f"transformer_blocks.{i}."
                c = self.conditioning(b + "norm1.emb.timestep_embedder", b + "norm1.emb.class_embedder.embedding_table.weight",
                                      features, y)
                mod = linear(sd, b + "norm1.linear", F.silu(c))
            else:
                b = f"blocks.{i}."
                mod = linear(sd, b + "adaLN_modulation.1", F.silu(cond))
            sh_a, sc_a, g_a, sh_m, sc_m, g_m = mod.chunk(6, dim=1)
            h = layer_norm(tok, 1e-6) * (1 + sc_a[:, None]) + sh_a[:, None]
            if self.diffusers:
                q = linear(sd, b + "attn1.to_q", h, bias=b + "attn1.to_q.bias" in sd)
                k = linear(sd, b + "attn1.to_k", h, bias=b + "attn1.to_k.bias" in sd)
                v = linear(sd, b + "attn1.to_v", h, bias=b + "attn1.to_v.bias" in sd)
                a = linear(sd, b + "attn1.to_out.0", attention(q, k, v, self.heads))
            else:
                q, k, v = linear(sd, b + "attn.qkv", h).chunk(3, dim=-1)
                a = linear(sd, b + "attn.proj", attention(q, k, v, self.heads))
            tok = tok + g_a[:, None] * a
            h = layer_norm(tok, self.mlp_eps) * (1 + sc_m[:, None]) + sh_m[:, None]
            if self.diffusers:
                m = linear(sd, b + "ff.net.2", F.gelu(linear(sd, b + "ff.net.0.proj", h), approximate="tanh"))
            else:
                m = linear(sd, b + "mlp.fc2", F.gelu(linear(sd, b + "mlp.fc1", h), approximate="tanh"))
            tok = tok + g_m[:, None] * m
        if self.diffusers:
            c0 = self.conditioning("transformer_blocks.0.norm1.emb.timestep_embedder",
                                   "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight", features, y)
            shift_f, scale_f = linear(sd, "proj_out_1", F.silu(c0)).chunk(2, dim=1)
            out = linear(sd, "proj_out_2", layer_norm(tok, 1e-6) * (1 + scale_f[:, None]) + shift_f[:, None])
        else:
            shift_f, scale_f = linear(sd, "final_layer.adaLN_modulation.1", F.silu(cond)).chunk(2, dim=1)
            out = linear(sd, "final_layer.linear", layer_norm(tok, 1e-6) * (1 + scale_f[:, None]) + shift_f[:, None])
        g, c = self.grid, self.out_channels
        out = out.reshape(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, g * p, g * p)
        return out[:, : self.channels]


class VaeDecoder:
    """diffusers' AutoencoderKL decoder as plain float64 torch."""

    def __init__(self, vae_dir):
        self.c = read_json(os.path.join(vae_dir, "config.json"))
        self.sd = load_tensors(os.path.join(vae_dir, "diffusion_pytorch_model.safetensors"))
        self.groups = self.c.get("norm_num_groups", 32)

    def conv(self, name, x):
        w = self.sd[name + ".weight"]
        return F.conv2d(x, w, self.sd[name + ".bias"], padding=w.shape[-1] // 2)

    def norm(self, name, x, silu=True):
        y = F.group_norm(x, self.groups, self.sd[name + ".weight"], self.sd[name + ".bias"], eps=1e-6)
        return F.silu(y) if silu else y

    def resnet(self, p, x):
        h = self.conv(p + "conv1", self.norm(p + "norm1", x))
        h = self.conv(p + "conv2", self.norm(p + "norm2", h))
        if p + "conv_shortcut.weight" in self.sd:
            x = self.conv(p + "conv_shortcut", x)
        return x + h

    def attention(self, p, x):
        n, c, hh, ww = x.shape
        h = self.norm(p + "group_norm", x, silu=False).reshape(n, c, hh * ww).transpose(1, 2)
        def proj(name, old, v):
            key = p + name if p + name + ".weight" in self.sd else p + old
            w = self.sd[key + ".weight"]
            return F.linear(v, w.reshape(w.shape[0], -1), self.sd[key + ".bias"])
        q, k, v = proj("to_q", "query", h), proj("to_k", "key", h), proj("to_v", "value", h)
        a = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(c), dim=-1) @ v
        o = proj("to_out.0", "proj_attn", a)
        return x + o.transpose(1, 2).reshape(n, c, hh, ww)

    def decode(self, latents):
        z = (1.0 / self.c.get("scaling_factor", 0.18215)) * latents
        if self.c.get("use_post_quant_conv", True):
            z = self.conv("post_quant_conv", z)
        x = self.conv("decoder.conv_in", z)
        x = self.resnet("decoder.mid_block.resnets.0.", x)
        if self.c.get("mid_block_add_attention", True):
            x = self.attention("decoder.mid_block.attentions.0.", x)
        x = self.resnet("decoder.mid_block.resnets.1.", x)
        blocks = len(self.c["block_out_channels"])
        for i in range(blocks):
            for j in range(self.c.get("layers_per_block", 1) + 1):
                x = self.resnet(f"decoder.up_blocks.{i}.resnets.{j}.", x)
            if i + 1 < blocks:
                x = self.conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv("decoder.conv_out", self.norm("decoder.conv_norm_out", x))


def inputs(dit):
    shape = (2, dit.channels, dit.size, dit.size)
    x = torch.from_numpy(gaussian_noise(42, shape)).to(DEVICE, torch.float64)
    t = torch.tensor([999.0, 500.0], dtype=torch.float64, device=DEVICE)
    y = torch.tensor([1, dit.num_classes], device=DEVICE)
    latents = torch.from_numpy(gaussian_noise(7, shape)).to(DEVICE, torch.float64)
    return x, t, y, latents


def check_diffusers(model_dir, dit, vae, eps, images):
    try:
        import diffusers
    except ImportError:
        print("diffusers is not installed: the plain modules stand alone")
        return True
    ok = True
    x, t, y, latents = inputs(dit)
    if dit.diffusers:
        model = diffusers.DiTTransformer2DModel.from_pretrained(os.path.join(model_dir, "transformer")).to(
            DEVICE, torch.float64).eval()
        with torch.no_grad():
            out = model(x, timestep=t, class_labels=y).sample[:, : dit.channels]
        err = (out - eps).abs().max().item() / eps.abs().max().item()
        print(f"diffusers {diffusers.__version__} DiTTransformer2DModel vs these modules: relative {err:.3g} "
              "(diffusers' float32 timestep features: ~1e-5 expected)")
        ok = ok and err < 1e-3
    auto = diffusers.AutoencoderKL.from_pretrained(os.path.join(model_dir, "vae")).to(DEVICE, torch.float64).eval()
    with torch.no_grad():
        out = auto.decode(latents / auto.config.scaling_factor).sample
    err = (out - images).abs().max().item() / images.abs().max().item()
    print(f"diffusers AutoencoderKL.decode vs these modules: relative {err:.3g}")
    return ok and err < 1e-6


def compare(reference, label, path):
    from safetensors.torch import load_file
    tern = load_file(path)
    dtype = label.rsplit("-", 1)[1] if "-" in label else "float32"
    tolerance = TOLERANCE[dtype]
    ok = True
    for name in ("eps", "images"):
        want = reference[name].to("cpu", torch.float64)
        got = tern[name].to(torch.float64)
        if got.shape != want.shape:
            print(f"{label} {name}: shape {tuple(got.shape)}, reference {tuple(want.shape)}")
            return False
        diff = (got - want).abs()
        rel = diff.max().item() / want.abs().max().item()
        l2 = (diff.square().sum() / want.square().sum()).sqrt().item()
        passed = rel <= tolerance and math.isfinite(rel)
        ok = ok and passed
        print(f"{label:>16} {name:>6}: max abs {diff.max().item():.3g} of max |ref| {want.abs().max().item():.3g}: "
              f"relative {rel:.3g} (L2 {l2:.3g}), tolerance {tolerance:g}: {'ok' if passed else 'FAIL'}")
    return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", help="write the reference outputs here")
    parser.add_argument("--reference", help="an earlier --out file to compare against")
    parser.add_argument("--compare", nargs="*", default=[], help="LABEL:FILE from tern-vae-bench --dump; "
                        "LABEL is <backend>-<dtype> (cpu-float32, cuda-bfloat16, ...)")
    parser.add_argument("--check-diffusers", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the float64 reference runs (default: cuda when there is one)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.set_grad_enabled(False)
    if args.reference:
        from safetensors.torch import load_file
        reference = load_file(args.reference)
    else:
        dit = Dit(args.model)
        vae = VaeDecoder(os.path.join(args.model, "vae"))
        x, t, y, latents = inputs(dit)
        reference = {"eps": dit.forward(x, t, y), "images": vae.decode(latents)}
        print(f"reference: eps {tuple(reference['eps'].shape)} max |eps| {reference['eps'].abs().max().item():.4g}; "
              f"images {tuple(reference['images'].shape)} max |x| {reference['images'].abs().max().item():.4g}")
        if args.check_diffusers and not check_diffusers(args.model, dit, vae, reference["eps"], reference["images"]):
            print("diffusers disagrees with the plain modules")
            return 1
        if args.out:
            from safetensors.torch import save_file
            save_file({k: v.to("cpu", torch.float32).contiguous() for k, v in reference.items()}, args.out)
    ok = True
    for item in args.compare:
        label, path = item.split(":", 1)
        ok = compare(reference, label, path) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
