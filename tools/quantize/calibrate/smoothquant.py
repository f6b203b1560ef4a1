#!/usr/bin/env python3
"""SmoothQuant: moves activation outliers into the weights, then INT8 W8A8 quantizes the result.

For the linear layers that follow a norm (q/k/v after input_layernorm, gate/up after
post_attention_layernorm), each input channel j gets a smoothing factor

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

from the calibration activations X of those layers and the largest weight of column j over the
layers sharing the input. The factors are folded into the model exactly: the norm's weight is
divided by s and each following layer's column j multiplied by s_j, so the float model computes the
same function while its activations become easier to quantize per token. The output is a dense
Hugging Face directory in the input's dtype; tern-quantize then quantizes it by round-to-nearest:

  smoothquant.py --model models/tern-demo-llm --out /tmp/demo-smooth [--alpha 0.5]
  tern-quantize --model /tmp/demo-smooth --out /tmp/demo-smooth-int8 --scheme int8

Checks: the smoothed directory, reloaded, scores the calibration text as the original does (the
only difference is the rounding of the stored weights; exit 1 beyond 1e-3 relative), and for every
smoothed layer the relative output error of simulated INT8 W8A8 (per-token activations,
per-channel weights) is printed before and after smoothing.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SMOOTHED = [("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
            ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))]
MIN_FACTOR = 1e-5


class InputRecorder:
    """Per-channel max |x| of a module's inputs, and the first rows of them (for the error check)."""

    def __init__(self, module, keep_rows):
        self.absmax = None
        self.rows = []
        self.kept = 0
        self.keep_rows = keep_rows
        self.handle = module.register_forward_pre_hook(self.hook)

    def hook(self, module, args):
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
        peak = x.abs().amax(dim=0)
        self.absmax = peak if self.absmax is None else torch.maximum(self.absmax, peak)
        if self.kept < self.keep_rows:
            self.rows.append(x[:self.keep_rows - self.kept].clone())
            self.kept += self.rows[-1].shape[0]

    def done(self):
        self.handle.remove()
        return self.absmax, torch.cat(self.rows)


def int8_w8a8_error(x, weight):
    """Relative output error of INT8 W8A8 (per-token activation, per-channel weight scales) on rows x."""
    def per_row(t):
        scale = t.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
        return torch.clamp(torch.round(t / scale), -127, 127) * scale

    exact = x @ weight.t()
    return ((per_row(x) @ per_row(weight).t() - exact).norm() / exact.norm()).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="dense Hugging Face Llama-family directory")
    ap.add_argument("--out", required=True, help="output directory (dense, smoothed)")
    ap.add_argument("--alpha", type=float, default=0.5, help="migration strength in [0, 1]")
    ap.add_argument("--calibration", default=common.DEFAULT_CALIBRATION)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if not 0.0 <= args.alpha <= 1.0:
        common.fail(f"--alpha {args.alpha}: must lie in [0, 1]")
    device = common.device_or_fail(args.device)
    model = common.load_model(args.model, device)
    batches = common.calibration_batches(args.model, args.calibration, args.samples, args.seq_len, args.seed)
    loss_before = common.lm_loss(model, batches, device)
    layers = common.decoder_layers(model)
    recorders = {(i, norm): InputRecorder(common.submodule(layer, names[0]), keep_rows=2048)
                 for i, layer in enumerate(layers) for norm, names in SMOOTHED}
    common.run_batches(model, batches, device)

    tensors = common.load_tensors(args.model)
    print(f"SmoothQuant alpha {args.alpha}, {args.samples} x {args.seq_len} calibration tokens from "
          f"{os.path.basename(args.calibration)}")
    print(f"{'layer':40s} {'s min':>9s} {'s max':>9s} {'INT8 err before':>16s} {'after':>9s}")
    for (i, norm_name), recorder in recorders.items():
        act_max, rows = recorder.done()
        norm = common.submodule(layers[i], norm_name)
        names = dict(SMOOTHED)[norm_name]
        linears = [common.submodule(layers[i], n) for n in names]
        weight_max = torch.stack([m.weight.data.abs().amax(dim=0) for m in linears]).amax(dim=0)
        factors = (act_max.pow(args.alpha) / weight_max.pow(1 - args.alpha).clamp(min=MIN_FACTOR)).clamp(min=MIN_FACTOR)
        factors = torch.where((act_max == 0) | (weight_max == 0), torch.ones_like(factors), factors)
        before = [int8_w8a8_error(rows, m.weight.data) for m in linears]
        norm.weight.data /= factors
        for m in linears:
            m.weight.data *= factors[None, :]
        after = [int8_w8a8_error(rows / factors[None, :], m.weight.data) for m in linears]
        for name, m, b, a in zip(names, linears, before, after):
            full = f"model.layers.{i}.{name}"
            print(f"{full:40s} {factors.min().item():9.3g} {factors.max().item():9.3g} {b:16.4e} {a:9.4e}")
        stored = [f"model.layers.{i}.{norm_name}.weight"] + [f"model.layers.{i}.{n}.weight" for n in names]
        for key, value in zip(stored, [norm.weight.data] + [m.weight.data for m in linears]):
            dtype = tensors[key].dtype
            converted = value.to(dtype).cpu()
            if not torch.isfinite(converted.float()).all():
                common.fail(f"{key}: smoothing overflows {dtype}; lower --alpha")
            tensors[key] = converted
    common.write_checkpoint(args.model, args.out, tensors)

    smoothed = common.load_model(args.out, device)
    loss_after = common.lm_loss(smoothed, batches, device)
    relative = abs(loss_after - loss_before) / loss_before
    print(f"calibration loss {loss_before:.5f} (original) vs {loss_after:.5f} (smoothed, reloaded): "
          f"{relative:.2e} relative")
    print(f"wrote {args.out}; quantize it with: tern-quantize --model {args.out} --out OUT --scheme int8")
    if relative > 1e-3:
        print("FAILED: the smoothed model does not compute what the original does")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
