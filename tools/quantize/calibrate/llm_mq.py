#!/usr/bin/env python3
"""LLM-MQ mixed precision: per-layer sensitivity, then the best plan under an average-bits budget.

Sensitivity, by first-order Taylor expansion of the LM loss L on calibration text: for a layer
group u (tern fuses q/k/v and gate/up, which must share a scheme, so each is one unit, as are o and
down) and a candidate scheme b,

    S(u, b) = sum_i |g_i (Q_b(W)_i - W_i)|          g = dL/dW averaged over the calibration samples

with Q_b tern's round-to-nearest (the grids of runtime/model/rtn_quantizer.h, what tern-quantize
applies to the plan). --fisher adds the second-order term 0.5 sum_i F_i (Q_b(W)_i - W_i)^2 with F
the empirical Fisher diagonal (the mean of the per-sample squared gradients). Dense costs nothing.

Allocation: minimize sum_u S(u, b_u) subject to sum_u bytes(u, b_u) <= budget / 8 * params, exactly,
by dynamic programming over the total bytes (in units of the greatest common divisor of every
candidate's size). bytes() counts what the compressed-tensors checkpoint holds: the codes, one fp16
scale per group and, for -asym schemes, the zero points; dense layers cost 16 bits a weight. The
budget covers the decoder's linear layers (the embedding and lm_head stay as they are).

Each plan is written in the format runtime/model/weight_scheme.h parses ({"default": "dense",
"layers": {module: scheme}}, every decoder linear named), for

  llm_mq.py --model models/tern-demo-llm --out /tmp/mq --budgets 6 5
  tern-quantize --model models/tern-demo-llm --out /tmp/demo-mixed-5 --scheme mixed:/tmp/mq/mixed-5bit.json

Also written: OUT/sensitivity.json (every unit's size and sensitivity per candidate, each plan's
bits and predicted loss increase). Candidates: weight-only spellings and "dense"
(default w4a16-g128,w8a16,dense).
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MAX_DP_CELLS = 50_000_000


def scheme_bytes(spelling, out_features, in_features):
    """Bytes of one [out, in] layer stored as `spelling` in a compressed-tensors checkpoint."""
    if spelling == "dense":
        return out_features * in_features * 2
    bits, group, symmetric = common.parse_weight_only(spelling)
    groups = in_features // group if group > 0 else 1
    pf = 32 // bits
    zero_bytes = 0 if symmetric else math.ceil(out_features / pf) * groups * 4
    return out_features * in_features * bits // 8 + out_features * groups * 2 + zero_bytes


def quantized(weight, spelling):
    if spelling == "dense":
        return weight
    bits, group, symmetric = common.parse_weight_only(spelling)
    return common.rtn_weight_only(weight, bits, group, symmetric, min_zero=0)


def gradients(model, batches, device, fisher):
    """Mean gradient (and mean squared per-sample gradient) of the LM loss for every decoder linear."""
    params = {f"model.layers.{i}.{name}": common.submodule(layer, name).weight
              for i, layer in enumerate(common.decoder_layers(model)) for name in common.LINEARS}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    grad = {k: torch.zeros_like(p) for k, p in params.items()}
    sq = {k: torch.zeros_like(p) for k, p in params.items()} if fisher else None
    for row in batches:
        ids = row[None].to(device)
        logits = model(input_ids=ids).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])
        model.zero_grad(set_to_none=True)
        loss.backward()
        for k, p in params.items():
            grad[k] += p.grad
            if fisher:
                sq[k] += p.grad.square()
    n = batches.shape[0]
    return ({k: g / n for k, g in grad.items()}, {k: s / n for k, s in sq.items()} if fisher else None), params


def allocate(units, candidates, budget_bytes):
    """Exact minimum of the summed sensitivity under the byte budget: one candidate index per unit."""
    costs = [[u["bytes"][c] for c in candidates] for u in units]
    unit = 0
    for row in costs:
        for c in row:
            unit = math.gcd(unit, c)
    capacity = budget_bytes // unit
    if capacity * len(units) > MAX_DP_CELLS:
        raise ValueError(f"the budget is {capacity} steps of {unit} bytes over {len(units)} units; too large for "
                         f"the exact allocation")
    cheapest = sum(min(row) for row in costs)
    if cheapest > budget_bytes:
        raise ValueError(f"the cheapest plan takes {cheapest} bytes, over the budget's {budget_bytes}")
    inf = float("inf")
    best = torch.full((capacity + 1,), inf, dtype=torch.float64)  # best[c]: least sensitivity at exactly c units
    best[0] = 0.0
    choices = torch.zeros(len(units), capacity + 1, dtype=torch.uint8)
    for i, u in enumerate(units):
        nxt = torch.full_like(best, inf)
        for j, c in enumerate(candidates):
            step = costs[i][j] // unit
            if step > capacity:
                continue
            shifted = torch.full_like(best, inf)
            shifted[step:] = best[:capacity + 1 - step] + u["sensitivity"][c]
            better = shifted < nxt
            nxt = torch.where(better, shifted, nxt)
            choices[i][better] = j
        best = nxt
    total = int(torch.argmin(best).item())
    if not math.isfinite(best[total].item()):
        raise ValueError("no plan fits the budget")
    picked = [0] * len(units)
    for i in reversed(range(len(units))):
        picked[i] = int(choices[i][total].item())
        total -= costs[i][picked[i]] // unit
    assert total == 0
    return picked


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="dense Hugging Face Llama-family directory")
    ap.add_argument("--out", required=True, help="directory for mixed-<B>bit.json plans and sensitivity.json")
    ap.add_argument("--budgets", type=float, nargs="+", default=[6.0, 5.0], help="average bits per weight")
    ap.add_argument("--candidates", default="w4a16-g128,w8a16,dense")
    ap.add_argument("--fisher", action="store_true", help="add the second-order (empirical Fisher) term")
    ap.add_argument("--calibration", default=common.DEFAULT_CALIBRATION)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if len(set(candidates)) != len(candidates) or len(candidates) < 2 or len(candidates) > 255:
        common.fail(f"--candidates {args.candidates}: name 2 or more different schemes")
    for c in candidates:
        if c != "dense":
            try:
                common.parse_weight_only(c)
            except ValueError as e:
                common.fail(f"--candidates: {e} (LLM-MQ here chooses among weight-only schemes and dense)")
    device = common.device_or_fail(args.device)
    model = common.load_model(args.model, device)
    batches = common.calibration_batches(args.model, args.calibration, args.samples, args.seq_len, args.seed)
    (grad, fisher), params = gradients(model, batches, device, args.fisher)

    units = []
    for i in range(len(common.decoder_layers(model))):
        for group in common.INPUT_GROUPS:
            modules = [f"model.layers.{i}.{name}" for name in group]
            unit = {"modules": modules, "params": 0, "bytes": {c: 0 for c in candidates},
                    "sensitivity": {c: 0.0 for c in candidates}}
            for m in modules:
                w = params[m].detach().float()
                out_features, in_features = w.shape
                unit["params"] += w.numel()
                for c in candidates:
                    try:
                        unit["bytes"][c] += scheme_bytes(c, out_features, in_features)
                        delta = quantized(w, c) - w
                    except ValueError as e:
                        common.fail(f"{m} as {c}: {e}")
                    s = (grad[m] * delta).abs().sum().item()
                    if fisher is not None:
                        s += 0.5 * (fisher[m] * delta.square()).sum().item()
                    unit["sensitivity"][c] += s
            units.append(unit)
    params_total = sum(u["params"] for u in units)

    os.makedirs(args.out, exist_ok=True)
    print(f"LLM-MQ sensitivity ({'first order + Fisher' if args.fisher else 'first order'}) from "
          f"{args.samples} x {args.seq_len} calibration tokens of {os.path.basename(args.calibration)}")
    print(f"{'unit':48s} " + " ".join(f"{c:>12s}" for c in candidates))
    for u in units:
        print(f"{'+'.join(u['modules'])[:48]:48s} " + " ".join(f"{u['sensitivity'][c]:12.4e}" for c in candidates))
    plans = {}
    for budget in args.budgets:
        budget_bytes = int(budget * params_total / 8)
        try:
            picked = allocate(units, candidates, budget_bytes)
        except ValueError as e:
            common.fail(f"budget {budget} bits: {e}")
        layers = {}
        used = 0
        predicted = 0.0
        counts = {c: 0 for c in candidates}
        for u, j in zip(units, picked):
            c = candidates[j]
            counts[c] += 1
            used += u["bytes"][c]
            predicted += u["sensitivity"][c]
            for m in u["modules"]:
                layers[m] = c
        name = f"mixed-{budget:g}bit.json"
        with open(os.path.join(args.out, name), "w") as f:
            json.dump({"default": "dense", "layers": layers}, f, indent=1, sort_keys=True)
            f.write("\n")
        bits = 8.0 * used / params_total
        plans[name] = {"budget_bits": budget, "bits": bits, "predicted_sensitivity": predicted,
                       "units": {c: n for c, n in counts.items()}}
        print(f"{name}: {bits:.3f} average bits (budget {budget:g}), units "
              + ", ".join(f"{c} x {n}" for c, n in counts.items()) + f", summed sensitivity {predicted:.4e}")
    with open(os.path.join(args.out, "sensitivity.json"), "w") as f:
        json.dump({"candidates": candidates, "fisher": args.fisher, "params": params_total, "units": units,
                   "plans": plans}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
