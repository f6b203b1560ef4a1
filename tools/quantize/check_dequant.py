#!/usr/bin/env python3
"""Quantized checkpoints dequantized by PyTorch, independently of tern.

The fixtures behind tests/runtime/model/quantized_model_test.cc's
LoadersAgreeWithPyTorch: tern's loaders (runtime/model/quantized_checkpoint.h)
must read every published format as PyTorch code written from the formats'
reference implementations reads it (AutoGPTQ's QuantLinear and pack(),
AutoAWQ's WQLinear_GEMM, compressed-tensors' pack_to_int32 and dequantize,
vLLM's fp8 checkpoints). Needs torch and safetensors (the GPU machine has
both); no GPU.

  check_dequant.py fixtures OUT_DIR
      writes one small checkpoint per format variant (OUT_DIR/<variant>/
      config.json + model.safetensors: three linear layers of random weights,
      quantized by round-to-nearest and packed as the format's own tools pack
      them) and OUT_DIR/golden.json with their dequantized projections
  check_dequant.py written NAME=DIR ... --golden golden.json
      adds the dequantized projections of checkpoints tern-quantize wrote
      (layer 0 and lm_head) under "written", with each file's sha256, so the
      test can check that tern reads back what it wrote as PyTorch does
  check_dequant.py compare QUANT_DIR DENSE_DIR
      prints each layer's relative error against the dense weights

A projection pair stands for a whole weight W [out, in]: wr = W r_in and
rw = r_out W with r_in[i] = sin(0.37 i + 1), r_out[o] = cos(0.11 o + 0.5),
in float64 (a permuted column, a wrong scale or a swapped nibble changes
them).
"""
import argparse
import hashlib
import json
import math
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

# ---------------------------------------------------------------- helpers

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # AutoAWQ: value t of a word is column order[t]


def to_int32(words):
    """uint32 values held in int64 -> the int32 tensor with the same bits."""
    words = words & 0xFFFFFFFF
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack_rows(codes, bits):
    """codes [rows, cols] -> int32 [rows / pf, cols]: word (r, c) holds rows r*pf + t at bits t*bits."""
    pf = 32 // bits
    rows, cols = codes.shape
    words = torch.zeros((rows + pf - 1) // pf, cols, dtype=torch.int64)
    for r in range(rows):
        words[r // pf] |= codes[r].to(torch.int64) << (bits * (r % pf))
    return to_int32(words)


def pack_cols(codes, bits, order=None):
    """codes [rows, cols] -> int32 [rows, ceil(cols / pf)]; value t of word w is column w*pf + order[t]."""
    pf = 32 // bits
    rows, cols = codes.shape
    order = order or list(range(pf))
    words = torch.zeros(rows, (cols + pf - 1) // pf, dtype=torch.int64)
    for w in range(words.shape[1]):
        for t in range(pf):
            c = w * pf + order[t]
            if c < cols:
                words[:, w] |= codes[:, c].to(torch.int64) << (bits * t)
    return to_int32(words)


def unpack_rows(packed, bits, rows):
    pf = 32 // bits
    shifts = torch.arange(pf, dtype=torch.int32) * bits
    values = (packed.unsqueeze(1) >> shifts.view(1, pf, 1)) & ((1 << bits) - 1)  # [rows/pf, pf, cols]
    return values.reshape(-1, packed.shape[1])[:rows]


def unpack_cols(packed, bits, cols, order=None):
    pf = 32 // bits
    shifts = torch.arange(pf, dtype=torch.int32) * bits
    values = (packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)  # [rows, words, pf]: value t
    if order is not None:
        inverse = [order.index(c) for c in range(pf)]  # column c sits at value inverse[c]
        values = values[:, :, inverse]
    return values.reshape(packed.shape[0], -1)[:, :cols]


def projections(weight):
    w = weight.to(torch.float64)
    out_features, in_features = w.shape
    r_in = torch.sin(0.37 * torch.arange(in_features, dtype=torch.float64) + 1.0)
    r_out = torch.cos(0.11 * torch.arange(out_features, dtype=torch.float64) + 0.5)
    return {"out": out_features, "in": in_features, "wr": (w @ r_in).tolist(), "rw": (r_out @ w).tolist()}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_dir(path):
    tensors = {}
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    for name in files:
        with safe_open(os.path.join(path, name), framework="pt") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    return tensors, config.get("quantization_config")


# ---------------------------------------------------------------- readers (the reference algorithms)


def gptq_dequantize(t, m, q):
    bits = q["bits"]
    qweight, qzeros, scales = t[m + ".qweight"], t[m + ".qzeros"], t[m + ".scales"].float()
    in_features, out_features = qweight.shape[0] * 32 // bits, qweight.shape[1]
    g_idx = t.get(m + ".g_idx")
    group = q["group_size"] if q["group_size"] > 0 else in_features
    if g_idx is None:
        g_idx = torch.arange(in_features, dtype=torch.int32) // group
    g_idx = g_idx.long()
    weight = unpack_rows(qweight, bits, in_features)  # [in, out]
    zeros = unpack_cols(qzeros, bits, out_features)  # [groups, out]
    if q.get("checkpoint_format", "gptq") == "gptq":
        zeros = zeros + 1  # AutoGPTQ stores zero - 1
    w = scales[g_idx] * (weight.float() - zeros[g_idx].float())  # [in, out]
    return w.t()


def awq_dequantize(t, m, q):
    qweight, qzeros, scales = t[m + ".qweight"], t[m + ".qzeros"], t[m + ".scales"].float()
    in_features, out_features = qweight.shape[0], qweight.shape[1] * 8
    group = q.get("q_group_size", q.get("group_size"))
    group = group if group > 0 else in_features
    weight = unpack_cols(qweight, 4, out_features, AWQ_ORDER)  # [in, out]
    zeros = unpack_cols(qzeros, 4, out_features, AWQ_ORDER)  # [groups, out]
    g = torch.arange(in_features) // group
    return (scales[g] * (weight.float() - zeros[g].float())).t()


def ct_group_for(q, module):
    import re

    def matches(target):
        if target == "Linear":
            return True
        if target.startswith("re:"):
            return re.match(target[3:], module) is not None
        return module == target or module.endswith("." + target)

    if any(matches(i) for i in q.get("ignore") or []):
        return None
    for group in q["config_groups"].values():
        if any(matches(target) for target in group["targets"]):
            return group
    return None


def ct_dequantize(t, m, q):
    group = ct_group_for(q, m)
    args = group["weights"]
    bits = args["num_bits"]
    if m + ".weight_packed" in t:
        out_features, in_features = [int(v) for v in t[m + ".weight_shape"].tolist()]
        offset = 1 << (bits - 1)
        values = unpack_cols(t[m + ".weight_packed"], bits, in_features).to(torch.int32) - offset  # signed
    else:
        values = t[m + ".weight"]
        out_features, in_features = values.shape
    scale = t[m + ".weight_scale"].float()
    if scale.dim() == 0 or scale.numel() == 1:
        scale = scale.reshape(1, 1).expand(out_features, 1)
    elif scale.dim() == 1:
        scale = scale.reshape(-1, 1)
    zero = t.get(m + ".weight_zero_point")
    if zero is not None and not args.get("symmetric", True):
        if zero.dtype == torch.int32:  # pack-quantized: packed along rows
            zero = unpack_rows(zero, bits, out_features).to(torch.int32) - (1 << (bits - 1))
        zero = zero.float().reshape(out_features, -1)
    else:
        zero = torch.zeros_like(scale)
    groups = scale.shape[1]
    g_idx = t.get(m + ".weight_g_idx")
    if g_idx is None:
        g_idx = torch.arange(in_features) // (in_features // groups)
    g_idx = g_idx.long()
    return (values.float() - zero[:, g_idx]) * scale[:, g_idx]


def fp8_dequantize(t, m, q):
    weight = t[m + ".weight"].float()
    scale = t[m + ".weight_scale"].float()
    scale = scale.reshape(-1, 1) if scale.numel() > 1 else scale.reshape(1, 1)
    return weight * scale


def quantized_modules(t):
    modules = set()
    for key, value in t.items():
        for suffix in (".qweight", ".weight_packed"):
            if key.endswith(suffix):
                modules.add(key[: -len(suffix)])
        if key.endswith(".weight") and value.dtype in (torch.int8, torch.float8_e4m3fn):
            modules.add(key[: -len(".weight")])
    return sorted(modules)


def dequantize_dir(path):
    t, q = load_dir(path)
    if q is None:
        raise SystemExit(f"{path}: no quantization_config")
    read = {"gptq": gptq_dequantize, "awq": awq_dequantize, "compressed-tensors": ct_dequantize,
            "fp8": fp8_dequantize}[q["quant_method"]]
    return {m: read(t, m, q) for m in quantized_modules(t)}


# ---------------------------------------------------------------- fixtures (the reference packers)

MODULES = {  # name -> (out, in)
    "model.layers.0.self_attn.q_proj": (64, 128),
    "model.layers.0.mlp.up_proj": (96, 128),
    "model.layers.0.mlp.down_proj": (128, 96),
}


def rtn(w, bits, group, sym, perm=None):
    """Round-to-nearest over groups of input channels (in `perm` order when given).

    Returns integer codes [out, in] in [0, 2^bits), scales and zeros [out, groups], g_idx [in]."""
    out_features, in_features = w.shape
    maxq = 2**bits - 1
    perm = perm if perm is not None else torch.arange(in_features)
    groups = in_features // group
    codes = torch.zeros(out_features, in_features, dtype=torch.int32)
    scales = torch.zeros(out_features, groups)
    zeros = torch.zeros(out_features, groups, dtype=torch.int32)
    g_idx = torch.zeros(in_features, dtype=torch.int32)
    for g in range(groups):
        cols = perm[g * group:(g + 1) * group]
        g_idx[cols] = g
        x = w[:, cols]
        if sym:
            scale = (2 * x.abs().amax(dim=1) / maxq).half().float()
            zero = torch.full((out_features,), (maxq + 1) // 2, dtype=torch.int32)
        else:
            lo, hi = x.amin(dim=1).clamp(max=0), x.amax(dim=1).clamp(min=0)
            scale = ((hi - lo) / maxq).half().float()
            zero = torch.round(-lo / scale).clamp(1, maxq).to(torch.int32)
        codes[:, cols] = torch.clamp(torch.round(x / scale[:, None]) + zero[:, None], 0, maxq).to(torch.int32)
        scales[:, g], zeros[:, g] = scale, zero
    return codes, scales, zeros, g_idx


def gptq_fixture(w, m, bits, group, sym, act_order, v2):
    out_features, in_features = w.shape
    perm = torch.randperm(in_features) if act_order else None
    codes, scales, zeros, g_idx = rtn(w, bits, group if group > 0 else in_features, sym, perm)
    stored_zeros = zeros if v2 else zeros - 1
    return {m + ".qweight": pack_rows(codes.t().contiguous(), bits),
            m + ".qzeros": pack_cols(stored_zeros.t().contiguous(), bits),
            m + ".scales": scales.t().contiguous().half(),
            m + ".g_idx": g_idx}


def awq_fixture(w, m, group):
    codes, scales, zeros, _ = rtn(w, 4, group, sym=False)
    return {m + ".qweight": pack_cols(codes.t().contiguous(), 4, AWQ_ORDER),
            m + ".qzeros": pack_cols(zeros.t().contiguous(), 4, AWQ_ORDER),
            m + ".scales": scales.t().contiguous().half()}


def ct_pack_fixture(w, m, bits, group, sym, act_order):
    out_features, in_features = w.shape
    perm = torch.randperm(in_features) if act_order else None
    codes, scales, zeros, g_idx = rtn(w, bits, group if group > 0 else in_features, sym, perm)
    t = {m + ".weight_packed": pack_cols(codes, bits),  # signed value + 2^(bits-1) == the unsigned code
         m + ".weight_shape": torch.tensor([out_features, in_features], dtype=torch.int64),
         m + ".weight_scale": scales.to(torch.bfloat16)}
    if not sym:
        t[m + ".weight_zero_point"] = pack_rows(zeros, bits)  # signed zero + 2^(bits-1), packed along rows
    if act_order:
        t[m + ".weight_g_idx"] = g_idx
    # bf16 scales: quantize again with the scales as stored, so codes and scales agree.
    stored = t[m + ".weight_scale"].float()
    g = g_idx.long()
    codes = torch.clamp(torch.round(w / stored[:, g]) + zeros[:, g], 0, 2**bits - 1).to(torch.int32)
    t[m + ".weight_packed"] = pack_cols(codes, bits)
    return t


def ct_w8a8_fixture(w, m, fp8, static):
    if fp8:
        scale = (w.abs().amax() / 448.0).reshape(1)
        t = {m + ".weight": (w / scale).clamp(-448, 448).to(torch.float8_e4m3fn), m + ".weight_scale": scale}
    else:
        scale = (w.abs().amax(dim=1, keepdim=True) / 127.0).to(torch.bfloat16)
        t = {m + ".weight": torch.round(w / scale.float()).clamp(-127, 127).to(torch.int8), m + ".weight_scale": scale}
    if static:
        t[m + ".input_scale"] = torch.tensor([0.02])
    return t


def fp8_fixture(w, m):
    scale = w.abs().amax() / 448.0
    return {m + ".weight": (w / scale).clamp(-448, 448).to(torch.float8_e4m3fn),
            m + ".weight_scale": scale.reshape(()).float(),
            m + ".input_scale": torch.tensor(0.05)}


def ct_config(fmt, weights, activations=None):
    return {"quant_method": "compressed-tensors", "format": fmt, "quantization_status": "compressed",
            "ignore": ["lm_head"], "kv_cache_scheme": None,
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                          "input_activations": activations, "output_activations": None}}}


VARIANTS = {
    "gptq-w4-g32": ({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True},
                    lambda w, m: gptq_fixture(w, m, 4, 32, True, False, False)),
    "gptq-w4-g32-asym-actorder": ({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": True,
                                   "sym": False}, lambda w, m: gptq_fixture(w, m, 4, 32, False, True, False)),
    "gptq-w8-channel": ({"quant_method": "gptq", "bits": 8, "group_size": -1, "desc_act": False, "sym": True},
                        lambda w, m: gptq_fixture(w, m, 8, -1, True, False, False)),
    "gptq_v2-w4-g32-asym": ({"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": False,
                             "checkpoint_format": "gptq_v2"}, lambda w, m: gptq_fixture(w, m, 4, 32, False, False, True)),
    "awq-w4-g32": ({"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm"},
                   lambda w, m: awq_fixture(w, m, 32)),
    "ct-pack-w4-g32-asym-actorder": (
        ct_config("pack-quantized", {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group",
                                     "group_size": 32, "actorder": "group"}),
        lambda w, m: ct_pack_fixture(w, m, 4, 32, False, True)),
    "ct-pack-w8-channel": (
        ct_config("pack-quantized", {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"}),
        lambda w, m: ct_pack_fixture(w, m, 8, -1, True, False)),
    "ct-int8-w8a8": (
        ct_config("int-quantized", {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
                  {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True}),
        lambda w, m: ct_w8a8_fixture(w, m, False, False)),
    "ct-fp8-w8a8-static": (
        ct_config("float-quantized", {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor"},
                  {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False}),
        lambda w, m: ct_w8a8_fixture(w, m, True, True)),
    "fp8-static": ({"quant_method": "fp8", "activation_scheme": "static"}, lambda w, m: fp8_fixture(w, m)),
}


def make_fixtures(out_dir):
    golden = {"fixtures": {}}
    for variant, (config, pack) in VARIANTS.items():
        torch.manual_seed(sum(map(ord, variant)))
        tensors = {}
        for m, (out_features, in_features) in MODULES.items():
            w = torch.randn(out_features, in_features) / math.sqrt(in_features)
            tensors.update(pack(w, m))
        path = os.path.join(out_dir, variant)
        os.makedirs(path, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(path, "model.safetensors"),
                  metadata={"format": "pt"})
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump({"quantization_config": config}, f, indent=1)
        weights = dequantize_dir(path)
        assert sorted(weights) == sorted(MODULES), (variant, sorted(weights))
        golden["fixtures"][variant] = {m: projections(w) for m, w in weights.items()}
        print(f"{variant}: {', '.join(f'{m} {tuple(w.shape)}' for m, w in weights.items())}")
    write_golden(os.path.join(out_dir, "golden.json"), golden)


def write_golden(path, golden):
    def rounded(value):
        if isinstance(value, float):
            return float(f"{value:.9g}")
        if isinstance(value, list):
            return [rounded(v) for v in value]
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value

    with open(path, "w") as f:
        json.dump(rounded(golden), f, separators=(",", ":"), sort_keys=True)
        f.write("\n")


def add_written(pairs, golden_path):
    golden = json.load(open(golden_path)) if os.path.exists(golden_path) else {}
    golden.setdefault("written", {})
    for pair in pairs:
        name, path = pair.split("=", 1)
        weights = dequantize_dir(path)
        kept = {m: projections(w) for m, w in weights.items() if m.startswith("model.layers.0.") or m == "lm_head"}
        golden["written"][name] = {"sha256": sha256(os.path.join(path, "model.safetensors")), "modules": kept}
        print(f"{name}: {len(weights)} quantized layers, {len(kept)} kept")
    write_golden(golden_path, golden)


def compare(quantized, dense):
    weights = dequantize_dir(quantized)
    t, _ = load_dir(dense)
    worst = 0.0
    for m, w in weights.items():
        ref = t[m + ".weight"].float()
        err = ((w - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
        print(f"{m}: relative error {err:.4e}")
    print(f"worst {worst:.4e} over {len(weights)} layers")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fixtures")
    p.add_argument("out_dir")
    p = sub.add_parser("written")
    p.add_argument("pairs", nargs="+", help="NAME=DIR")
    p.add_argument("--golden", required=True)
    p = sub.add_parser("compare")
    p.add_argument("quantized")
    p.add_argument("dense")
    args = parser.parse_args()
    if args.command == "fixtures":
        make_fixtures(args.out_dir)
    elif args.command == "written":
        add_written(args.pairs, args.golden)
    else:
        compare(args.quantized, args.dense)


if __name__ == "__main__":
    sys.exit(main())
