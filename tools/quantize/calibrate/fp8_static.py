#!/usr/bin/env python3
"""FP8 W8A8 with static activation scales calibrated on text, written as compressed-tensors.

Weights as tern-quantize's fp8 (runtime/model/rtn_quantizer.h): per output channel, scale
absmax / 448, values e4m3 (nearest, ties to even). Activations: one scale per layer,
input_scale = max |x| / 448 over the calibration activations of that layer's input, so the run-time
quantization x / input_scale never saturates on the calibration text. tern's loader reads static
scales (runtime/model/quantized_checkpoint.h: M.input_scale [1] with input_activations
{"strategy": "tensor", "dynamic": false}; fused q/k/v and gate/up take the largest of their parts,
which read one input and so get one scale here anyway).

  fp8_static.py --model models/tern-demo-llm --out /tmp/demo-fp8-static

Checks: every layer read back with check_dequant.py's compressed-tensors reader equals the weights
computed here; and the calibration loss is printed for the float model, FP8 weights with dynamic
per-token activations, and FP8 weights with these static scales (simulated in PyTorch with
kernels/gemm/quant_gemm.h's arithmetic).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import check_dequant  # noqa: E402

FP8_MAX = 448.0


def fp8_weight(w):
    """Per-output-channel FP8 E4M3: (values F8_E4M3 [out, in], scales float32 [out, 1])."""
    absmax = w.abs().amax(dim=1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / FP8_MAX, torch.ones_like(absmax))
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def fake_quant_activations(x, static_scale):
    """x after FP8 activation quantization: per token (dynamic) when static_scale is None."""
    if static_scale is None:
        scale = (x.abs().amax(dim=-1, keepdim=True) / FP8_MAX).clamp(min=1.0 / (FP8_MAX * 512))
    else:
        scale = static_scale
    return (x / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float() * scale


def quantization_config(calibration_name):
    weights = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel", "group_size": None,
               "dynamic": False, "actorder": None, "observer": "minmax"}
    activations = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False,
                   "observer": "minmax"}
    return {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                          "input_activations": activations, "output_activations": None,
                                          "format": "float-quantized"}},
            "ignore": ["lm_head"], "kv_cache_scheme": None, "sparsity_config": {},
            "global_compression_ratio": None,
            "meta": {"quantizer": "tern tools/quantize/calibrate/fp8_static.py", "calibration": calibration_name}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="dense Hugging Face Llama-family directory")
    ap.add_argument("--out", required=True, help="output directory (compressed-tensors FP8, static activations)")
    ap.add_argument("--calibration", default=common.DEFAULT_CALIBRATION)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    device = common.device_or_fail(args.device)
    model = common.load_model(args.model, device)
    batches = common.calibration_batches(args.model, args.calibration, args.samples, args.seq_len, args.seed)
    layers = common.decoder_layers(model)
    linears = {f"model.layers.{i}.{name}": common.submodule(layer, name)
               for i, layer in enumerate(layers) for name in common.LINEARS}

    absmax = {}

    def recorder(name):
        def hook(module, inputs):
            peak = inputs[0].detach().abs().amax().float()
            absmax[name] = torch.maximum(absmax[name], peak) if name in absmax else peak
        return hook

    handles = [m.register_forward_pre_hook(recorder(name)) for name, m in linears.items()]
    loss_float = common.lm_loss(model, batches, device)
    for h in handles:
        h.remove()

    tensors = common.load_tensors(args.model)
    computed = {}
    input_scales = {}
    for name, module in linears.items():
        if absmax.get(name, torch.tensor(0.0)).item() <= 0:
            common.fail(f"{name}: no non-zero calibration activation reached it")
        values, scale = fp8_weight(module.weight.data.float())
        input_scales[name] = (absmax[name] / FP8_MAX).reshape(1).cpu()
        del tensors[name + ".weight"]
        tensors[name + ".weight"] = values.cpu()
        tensors[name + ".weight_scale"] = scale.cpu()
        tensors[name + ".input_scale"] = input_scales[name]
        computed[name] = values.float() * scale
    common.write_checkpoint(args.model, args.out, tensors, quantization_config(os.path.basename(args.calibration)))

    # Self-check: the reference reader sees the weights computed here.
    read_back = check_dequant.dequantize_dir(args.out)
    mismatched = [m for m in linears if m not in read_back or not torch.equal(read_back[m].float(), computed[m].cpu())]

    # The calibration loss with FP8 weights and dynamic, then static, activation quantization.
    for name, module in linears.items():
        module.weight.data.copy_(computed[name])
    losses = {}
    for mode in ("dynamic", "static"):
        handles = []
        for name, module in linears.items():
            scale = input_scales[name].to(device) if mode == "static" else None
            handles.append(module.register_forward_pre_hook(
                lambda m, inputs, s=scale: (fake_quant_activations(inputs[0], s),) + tuple(inputs[1:])))
        losses[mode] = common.lm_loss(model, batches, device)
        for h in handles:
            h.remove()
    scales = torch.cat(list(input_scales.values()))
    print(f"FP8 static activation scales from {args.samples} x {args.seq_len} calibration tokens of "
          f"{os.path.basename(args.calibration)}: {len(scales)} layers, input_scale "
          f"{scales.min().item():.4g} .. {scales.max().item():.4g}")
    print(f"calibration loss: float {loss_float:.5f}, FP8 dynamic per-token {losses['dynamic']:.5f}, "
          f"FP8 static {losses['static']:.5f} nats/token")
    print(f"read back through check_dequant.py: {len(linears) - len(mismatched)} of {len(linears)} layers identical")
    print(f"wrote {args.out}")
    if mismatched:
        print(f"FAILED: layers read back differently: {', '.join(mismatched)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
