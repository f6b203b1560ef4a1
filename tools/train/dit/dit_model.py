"""The tern-demo-dit network: a class-conditional diffusion transformer with the DiT-XL/2 block
design at a small size.

Data flow for an image batch x [N, C, H, W], timesteps t [N] (integers 0..T-1, as float) and class
ids y [N] (0..num_classes-1, or num_classes for the null class of classifier-free guidance):

  tokens = patch_embed(x) + pos_embed           # [N, (H/p)*(W/p), hidden], fixed 2-D sin-cos table
  c = t_embed(t) + class_embed(y)               # [N, hidden]
  tokens = block(tokens, c) for each block      # adaLN-Zero: LayerNorm without affine, then
                                                #   x * (1 + scale) + shift from c, gate on the residual
  out = final_layer(tokens, c)                  # adaLN (shift, scale) + Linear to p*p*C_out
  eps = unpatchify(out)                         # [N, C_out, H, W]

The tensor names of the state dict are the ones model.safetensors holds (see
models/tern-demo-dit/README.md for shapes and the exact arithmetic).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_features(t, dim, max_period=10000.0):
    """[N] timesteps -> [N, dim] features: cos(t * f_i) for i < dim/2, then sin(t * f_i),
    with f_i = exp(-ln(max_period) * i / (dim/2)); in t's dtype (float32 in training)."""
    dt = t.dtype if t.is_floating_point() else torch.float32
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dt, device=t.device) / half)
    args = t.to(dt)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_1d(dim, positions):
    """[L] positions -> [L, dim]: sin(pos * w_i) for i < dim/2, then cos(pos * w_i),
    w_i = 1 / 10000^(i / (dim/2)). float64 for an exact table."""
    i = torch.arange(dim // 2, dtype=torch.float64)
    w = 1.0 / (10000.0 ** (i / (dim // 2)))
    a = positions.double()[:, None] * w[None, :]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def sincos_2d(dim, grid):
    """Fixed position table [grid*grid, dim] for a grid x grid token map in row-major order (token
    index = row * grid + col): the first dim/2 features encode the column, the last dim/2 the row."""
    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1).float()


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        n, l, d = x.shape
        qkv = self.qkv(x).reshape(n, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                      # [N, heads, L, head_dim]
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            a = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
            o = a @ v
        return self.proj(o.transpose(1, 2).reshape(n, l, d))


class Mlp(nn.Module):
    def __init__(self, hidden, inner):
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.attn = Attention(hidden, heads)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))
        self.adaLN_modulation = nn.Linear(hidden, 6 * hidden)   # input SiLU(c)

    def forward(self, x, c):
        sh_a, sc_a, g_a, sh_m, sc_m, g_m = self.adaLN_modulation(F.silu(c)).chunk(6, dim=1)
        x = x + g_a.unsqueeze(1) * self.attn(modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), sh_a, sc_a))
        x = x + g_m.unsqueeze(1) * self.mlp(modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), sh_m, sc_m))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden, patch, out_channels):
        super().__init__()
        self.adaLN_modulation = nn.Linear(hidden, 2 * hidden)   # input SiLU(c)
        self.linear = nn.Linear(hidden, patch * patch * out_channels)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(F.silu(c)).chunk(2, dim=1)
        return self.linear(modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), shift, scale))


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq_dim):
        super().__init__()
        self.freq_dim = freq_dim
        self.fc1 = nn.Linear(freq_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, t):
        return self.fc2(F.silu(self.fc1(timestep_features(t, self.freq_dim))))


class DiT(nn.Module):
    """cfg: dict with image_size, in_channels, patch_size, hidden_size, depth, num_heads,
    mlp_ratio, num_classes, learn_sigma, frequency_embedding_size."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        h, p = cfg["hidden_size"], cfg["patch_size"]
        self.in_channels = cfg["in_channels"]
        self.out_channels = cfg["in_channels"] * (2 if cfg["learn_sigma"] else 1)
        self.patch = p
        self.grid = cfg["image_size"] // p
        self.x_embedder = nn.Conv2d(self.in_channels, h, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", sincos_2d(h, self.grid).unsqueeze(0), persistent=True)
        self.t_embedder = TimestepEmbedder(h, cfg["frequency_embedding_size"])
        self.y_embedder = nn.Embedding(cfg["num_classes"] + 1, h)   # last row: null class
        self.blocks = nn.ModuleList(
            [DiTBlock(h, cfg["num_heads"], cfg["mlp_ratio"]) for _ in range(cfg["depth"])])
        self.final_layer = FinalLayer(h, p, self.out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        nn.init.normal_(self.y_embedder.weight, std=0.02)
        nn.init.normal_(self.t_embedder.fc1.weight, std=0.02)
        nn.init.normal_(self.t_embedder.fc2.weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output as zero.
        for b in self.blocks:
            nn.init.zeros_(b.adaLN_modulation.weight)
            nn.init.zeros_(b.adaLN_modulation.bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation.weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x):
        """[N, L, p*p*C] with the patch vector ordered (row in patch, col in patch, channel)
        -> [N, C, H, W]."""
        n, g, p, c = x.shape[0], self.grid, self.patch, self.out_channels
        x = x.reshape(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(n, c, g * p, g * p)

    def forward(self, x, t, y):
        tok = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for b in self.blocks:
            tok = b(tok, c)
        return self.unpatchify(self.final_layer(tok, c))

    def eps(self, x, t, y):
        """Noise prediction: the first in_channels output channels (the rest, when learn_sigma,
        are the variance interpolation, unused by deterministic samplers)."""
        return self.forward(x, t, y)[:, : self.in_channels]
