#!/usr/bin/env python3
"""GPTQ: weight-only quantization with error-compensating rounding, written as a GPTQ checkpoint.

Layer by layer over the decoder, and within a layer input group by input group (q/k/v, o, gate/up,
down: "true sequential"), each linear layer's Hessian H = 2/n X^T X comes from the calibration
activations that reach it through the layers already quantized. Columns are then rounded one at a
time on tern's grid (runtime/model/rtn_quantizer.h: symmetric 2 absmax / (2^bits - 1) with zero
2^(bits-1), or min/max with a zero point; fp16 scales; ties to even), each column's rounding error
spread over the columns not yet rounded through the inverse Hessian's Cholesky factor, with
dampening (a fraction of the mean diagonal added to H). A group's scale and zero are taken from its
columns as they stand when the group's first column is reached. --act-order rounds the columns in
order of decreasing Hessian diagonal; groups are then formed in that order and g_idx maps each input
channel to its group (desc_act).

The output is the GPTQ checkpoint tern-quantize writes (qweight, qzeros in the original zero - 1
convention, fp16 scales, g_idx; the same quantization_config), so tern-perplexity --model OUT and
the other engines load it. Then the script checks itself: it reloads OUT, dequantizes every layer
with check_dequant.py's GPTQ reader and requires the weights it computed with, bit for bit; and it
prints each layer's output error on the calibration activations, tr(dW H dW^T) / tr(W H W^T),
beside round-to-nearest's on the same activations. GPTQ must be lower on every layer (exit 1 if
not; the checkpoint is written either way).

  gptq.py --model models/tern-demo-llm --out /tmp/demo-gptq-w4-g128 --bits 4 --group-size 128
          [--asym] [--act-order] [--damp 0.01] [--calibration loadtest/prompts/lima.csv]
          [--samples 64] [--seq-len 512] [--report report.json]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import check_dequant  # noqa: E402

BLOCK = 128  # columns per lazy-update block (a multiple of every group size, or the group itself)


class HessianRecorder:
    """Accumulates X^T X (float64) of a linear layer's inputs through a forward pre-hook."""

    def __init__(self, module):
        n = module.in_features
        self.sum = torch.zeros(n, n, dtype=torch.float64, device=module.weight.device)
        self.rows = 0
        self.handle = module.register_forward_pre_hook(self.hook)

    def hook(self, module, args):
        x = args[0].detach().reshape(-1, module.in_features).to(torch.float64)
        self.sum += x.t() @ x
        self.rows += x.shape[0]

    def hessian(self):
        self.handle.remove()
        if self.rows == 0:
            raise RuntimeError("no calibration activation reached the layer")
        return (2.0 / self.rows) * self.sum


def gptq_quantize(w, hessian, bits, group, symmetric, act_order, damp):
    """GPTQ of one weight `w` [out, in] against `hessian` [in, in].

    Returns codes [out, in] (int, original column order), scales and zeros [out, groups] (float32;
    zeros are codes >= 1, as GPTQ's format stores zero - 1), g_idx [in] (int32) and the
    dequantized weight [out, in] (float32) the codes stand for."""
    out_features, in_features = w.shape
    group_len = group if group > 0 else in_features
    if in_features % group_len:
        raise ValueError(f"group size {group_len} does not divide in_features {in_features}")
    min_zero = 1
    W = w.clone().float()
    H = hessian.clone().float()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
    else:
        perm = torch.arange(in_features, device=W.device)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(in_features, device=H.device)
    try:
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except RuntimeError as e:  # torch.linalg.LinAlgError derives from RuntimeError
        raise ValueError(f"the damped Hessian is not positive definite ({e}); raise --damp") from e

    groups = in_features // group_len
    codes = torch.zeros(out_features, in_features, device=W.device)
    dequantized = torch.zeros_like(W)
    scales = torch.zeros(out_features, groups, device=W.device)
    zeros = torch.zeros(out_features, groups, device=W.device)
    block = max(BLOCK, group_len) if group > 0 else BLOCK
    scale = zero = None
    if group <= 0:  # one group per row: its grid from the whole row before any update
        scale, zero = common.group_grid(W, bits, symmetric, min_zero)
        scales[:, 0], zeros[:, 0] = scale, zero
    for i1 in range(0, in_features, block):
        i2 = min(i1 + block, in_features)
        W1 = W[:, i1:i2].clone()
        errors = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            column = i1 + i
            if group > 0 and column % group_len == 0:  # groups start at block boundaries or inside
                scale, zero = common.group_grid(W1[:, i:i + group_len], bits, symmetric, min_zero)
                scales[:, column // group_len], zeros[:, column // group_len] = scale, zero
            q = common.quantize_codes(W1[:, i:i + 1], scale, zero, bits)[:, 0]
            codes[:, column] = q
            dequantized[:, column] = (q - zero) * scale
            error = (W1[:, i] - dequantized[:, column]) / Hinv1[i, i]
            W1[:, i:] -= error[:, None] * Hinv1[i, i:][None, :]
            errors[:, i] = error
        W[:, i2:] -= errors @ Hinv[i1:i2, i2:]

    inverse = torch.argsort(perm)
    g_idx = (torch.arange(in_features, device=W.device) // group_len)[inverse].to(torch.int32)
    return codes[:, inverse], scales, zeros, g_idx, dequantized[:, inverse]


def output_error(delta, weight, hessian):
    """tr(dW H dW^T) / tr(W H W^T): the layer's relative squared output error on the activations."""
    d, w = delta.double(), weight.double()
    return (torch.einsum("oi,ij,oj->", d, hessian, d) / torch.einsum("oi,ij,oj->", w, hessian, w)).item()


def gptq_tensors(module, codes, scales, zeros, g_idx, bits):
    """The module's GPTQ tensors (check_dequant.py's packers, AutoGPTQ's layout)."""
    return {module + ".qweight": check_dequant.pack_rows(codes.t().contiguous().to(torch.int32).cpu(), bits),
            module + ".qzeros": check_dequant.pack_cols((zeros - 1).t().contiguous().to(torch.int32).cpu(), bits),
            module + ".scales": scales.t().contiguous().half().cpu(),
            module + ".g_idx": g_idx.cpu()}


def quantization_config(args, calibration_name):
    # As tern-quantize writes it (tools/quantize/checkpoint_writer.cc), with GPTQ's own settings.
    return {"quant_method": "gptq", "bits": args.bits, "group_size": args.group_size, "desc_act": args.act_order,
            "sym": not args.asym, "static_groups": False, "true_sequential": True, "damp_percent": args.damp,
            "lm_head": False, "checkpoint_format": "gptq",
            "meta": {"quantizer": "tern tools/quantize/calibrate/gptq.py", "method": "gptq",
                     "calibration": calibration_name, "samples": args.samples, "seq_len": args.seq_len}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="dense Hugging Face Llama-family directory")
    ap.add_argument("--out", required=True, help="output directory (a GPTQ checkpoint)")
    ap.add_argument("--bits", type=int, choices=[4, 8], default=4)
    ap.add_argument("--group-size", type=int, choices=[32, 64, 128, 256, -1], default=128,
                    help="input channels per scale; -1: one per output channel")
    ap.add_argument("--asym", action="store_true", help="a zero point per group (min/max grid)")
    ap.add_argument("--act-order", action="store_true", help="round columns by decreasing Hessian diagonal (g_idx)")
    ap.add_argument("--damp", type=float, default=0.01, help="dampening, a fraction of the mean Hessian diagonal")
    ap.add_argument("--calibration", default=common.DEFAULT_CALIBRATION)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--report", help="also write the per-layer errors here (JSON)")
    args = ap.parse_args()
    if not 0 < args.damp < 1:
        common.fail(f"--damp {args.damp}: must lie in (0, 1)")
    device = common.device_or_fail(args.device)
    torch.manual_seed(args.seed)
    started = time.time()

    model = common.load_model(args.model, device)
    batches = common.calibration_batches(args.model, args.calibration, args.samples, args.seq_len, args.seed)
    loss_before = common.lm_loss(model, batches, device)
    layers = common.decoder_layers(model)
    pf = 32 // args.bits
    for i, layer in enumerate(layers):
        for name in common.LINEARS:
            m = common.submodule(layer, name)
            group = args.group_size if args.group_size > 0 else m.in_features
            if m.in_features % group or m.in_features % pf or m.out_features % pf:
                common.fail(f"model.layers.{i}.{name} is [{m.out_features}, {m.in_features}]: GPTQ needs in and "
                            f"out divisible by {pf} and in by the group size {group}")

    tensors = common.load_tensors(args.model)
    results = []  # per layer: module, rtn error, gptq error
    dequantized = {}
    for i, layer in enumerate(layers):
        for group_names in common.INPUT_GROUPS:
            modules = [common.submodule(layer, name) for name in group_names]
            recorder = HessianRecorder(modules[0])  # the group's members read the same input
            common.run_batches(model, batches, device)
            hessian = recorder.hessian()
            for name, module in zip(group_names, modules):
                full = f"model.layers.{i}.{name}"
                original = module.weight.data.clone()
                try:
                    codes, scales, zeros, g_idx, deq = gptq_quantize(original, hessian, args.bits, args.group_size,
                                                                     not args.asym, args.act_order, args.damp)
                except ValueError as e:
                    common.fail(f"{full}: {e}")
                rtn = common.rtn_weight_only(original, args.bits, args.group_size, not args.asym, min_zero=1)
                results.append({"module": full, "rtn": output_error(rtn - original, original, hessian),
                                "gptq": output_error(deq - original, original, hessian)})
                module.weight.data.copy_(deq)
                dequantized[full] = deq.cpu()
                del tensors[full + ".weight"]
                tensors.update(gptq_tensors(full, codes, scales, zeros, g_idx, args.bits))
    loss_after = common.lm_loss(model, batches, device)
    common.write_checkpoint(args.model, args.out, tensors,
                            quantization_config(args, os.path.basename(args.calibration)))

    # Self-check 1: the written checkpoint, read by the reference GPTQ reader, is what we computed with.
    read_back = check_dequant.dequantize_dir(args.out)
    if sorted(read_back) != sorted(dequantized):
        common.fail(f"{args.out}: the quantized layers read back ({len(read_back)}) are not those written "
                    f"({len(dequantized)})")
    mismatched = [m for m, w in read_back.items() if not torch.equal(w.float(), dequantized[m])]
    # Self-check 2: GPTQ's output error on the calibration activations is below round-to-nearest's.
    worse = [r["module"] for r in results if not r["gptq"] < r["rtn"]]
    scheme = f"w{args.bits}a16-g{args.group_size}" + ("-asym" if args.asym else "") + (
        " act-order" if args.act_order else "")
    print(f"GPTQ {scheme}, {args.samples} x {args.seq_len} calibration tokens from "
          f"{os.path.basename(args.calibration)}, damp {args.damp}")
    print(f"{'layer':40s} {'RTN error':>11s} {'GPTQ error':>11s} {'GPTQ/RTN':>9s}")
    for r in results:
        print(f"{r['module']:40s} {r['rtn']:11.4e} {r['gptq']:11.4e} {r['gptq'] / r['rtn']:9.3f}")
    rtn_mean = sum(r["rtn"] for r in results) / len(results)
    gptq_mean = sum(r["gptq"] for r in results) / len(results)
    print(f"{'mean':40s} {rtn_mean:11.4e} {gptq_mean:11.4e} {gptq_mean / rtn_mean:9.3f}")
    print(f"calibration loss {loss_before:.5f} -> {loss_after:.5f} nats/token")
    print(f"read back through check_dequant.py: {len(read_back) - len(mismatched)} of {len(read_back)} layers "
          f"bit-identical")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"scheme": scheme, "layers": results, "loss_before": loss_before, "loss_after": loss_after,
                       "mismatched": mismatched, "worse_than_rtn": worse}, f, indent=1)
    print(f"wrote {args.out} in {time.time() - started:.1f} s")
    if mismatched:
        print(f"FAILED: layers read back differently: {', '.join(mismatched)}")
    if worse:
        print(f"FAILED: GPTQ's error is not below RTN's on {', '.join(worse)}")
    return 1 if mismatched or worse else 0


if __name__ == "__main__":
    sys.exit(main())
