#!/usr/bin/env python3
"""Caps every head of a MoA plan at a fraction of the context, and writes the result as a tern plan.

    python3 tools/moa/cap_plan.py --plan tools/moa/plans/gradientai-Llama-3-8B-Instruct-262k.moa_alpha_beta.json \
        --cap 0.5 --max-length 16384 --out tools/moa/plans/llama-3-8b-capped-50.tern.json

Each head keeps its sink and at most its own band, and attends at most --cap of the tokens a query
sees: the band becomes B(n) = min(span(n), floor(cap * n) - sink), at least one token. B is not
linear, so the written plan has a bucket between each pair of knots (--knots, then every
--knot-step tokens up to --max-length) whose rule is the steepest line from B at the bucket's start
that stays under B (taken before its floors, so the floored band stays under B too) up to its end. Where the head's own band is at least one token B is the minimum of
two nondecreasing lines, concave, and that line is the chord: the capped head reads exactly B at the
knots and no more between them; where the head's band is clamped to one token the line runs lower.
The tool checks at every length up to --max-length with tern's span arithmetic
(kernels/attention/attention_spans.h) and refuses to write a plan that breaks the bound. Above --max-length
the last bucket's chord goes on and the cap is no longer promised.

The input is either format runtime/model/moa_plan.h reads (thu-nics/MoA's alphas/betas, read as a
64-token sink and a band of alpha - 64 + beta * N, or tern.moa.v1). What capping does to a model's
quality is not known from the plan: it is a memory bound (what a KV-cache group keeps), to be judged
on the model itself (tools/moa/README.md).
"""
import argparse
import json
import math
import os

MOA_FORMAT_SINK = 64  # runtime/model/moa_plan.h, kMoaFormatSinkTokens


def load(path):
    """Returns (layers, heads, sinks[l][h], buckets [(max_length or None, alphas[l][h], betas[l][h])])."""
    with open(path) as f:
        d = json.load(f)
    if d.get("format") == "tern.moa.v1":
        L, H = d["num_layers"], d["num_heads"]
        s = d["sinks"]
        sinks = [[s] * H for _ in range(L)] if isinstance(s, int) else s
        buckets = [(b.get("max_length"), b["alphas"], b["betas"]) for b in d["buckets"]]
        return L, H, sinks, buckets
    alphas, betas = d["alphas"], d["betas"]
    L, H = len(alphas), len(alphas[0])
    band = [[a - MOA_FORMAT_SINK for a in row] for row in alphas]
    return L, H, [[MOA_FORMAT_SINK] * H for _ in range(L)], [(None, band, betas)]


def band(buckets, l, h, n):
    """alpha + beta * n of head h of layer l's rule for a query that sees n tokens, before the floor."""
    for max_length, alphas, betas in buckets:
        if max_length is None or n <= max_length:
            break
    return betas[l][h] * n + alphas[l][h]


def span(buckets, l, h, n):
    """attention_spans.h: the band width of head h of layer l for a query that sees n tokens."""
    w = math.floor(band(buckets, l, h, n))  # the kernels' fused multiply-add; exact for these plans' dyadic rules
    return 1 if not w >= 1 else min(w, n)


def attended(sink, band_span, n):
    """Keys a head attends: its sink and its band, counted once where they overlap."""
    s = min(sink, n)
    return s + n - max(s, n - band_span)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="a MoA plan in either format")
    ap.add_argument("--cap", type=float, required=True, help="most of the context any head attends, in (0, 1]")
    ap.add_argument("--max-length", type=int, required=True, help="the cap holds at every length up to this")
    ap.add_argument("--knots", type=int, nargs="*", default=[128, 256, 512],
                    help="bucket ends below the first --knot-step")
    ap.add_argument("--knot-step", type=int, default=1024, help="bucket ends every this many tokens after")
    ap.add_argument("--out", required=True, help="the tern plan to write")
    args = ap.parse_args()
    if not 0 < args.cap <= 1:
        raise SystemExit("--cap must be in (0, 1]")
    L, H, sinks, buckets = load(args.plan)
    knots = sorted(set([k for k in args.knots if k < args.knot_step] +
                       list(range(args.knot_step, args.max_length + 1, args.knot_step)) + [args.max_length]))

    def target(l, h, n):  # B(n): the most tokens the capped head's band may hold
        return max(1, min(span(buckets, l, h, n), math.floor(args.cap * n) - sinks[l][h]))

    def line_target(l, h, n):  # B before the floors: a line under it floors to at most B
        return max(1.0, min(band(buckets, l, h, n), float(n), args.cap * n - sinks[l][h]))

    out_buckets = []
    prev = None
    for k in knots:
        alphas = [[0.0] * H for _ in range(L)]
        betas = [[0.0] * H for _ in range(L)]
        for l in range(L):
            for h in range(H):
                if prev is None:  # the first bucket: the band it has at its end, for every shorter length
                    alphas[l][h], betas[l][h] = float(target(l, h, k)), 0.0
                else:
                    # The steepest line from the bucket's start that stays under B in the bucket: the
                    # chord where B is concave, lower where the head's own band is clamped to one token.
                    lo = line_target(l, h, prev)
                    beta = min((line_target(l, h, n) - lo) / (n - prev) for n in range(prev + 1, k + 1))
                    if not 0 <= beta <= 1:
                        raise SystemExit(f"layer {l} head {h}: the capped band shrinks between {prev} and {k}")
                    betas[l][h] = beta
                    alphas[l][h] = lo - beta * prev
        out_buckets.append({"max_length": k, "alphas": alphas, "betas": betas})
        prev = k
    del out_buckets[-1]["max_length"]  # the last bucket covers every longer length
    plan_buckets = [(b.get("max_length"), b["alphas"], b["betas"]) for b in out_buckets]

    # Check with tern's span arithmetic: no head reads more than its own band or the cap.
    worst, keys_orig, keys_new = 0, {}, {}
    for n in range(1, args.max_length + 1):
        for l in range(L):
            for h in range(H):
                s = span(plan_buckets, l, h, n)
                if s > target(l, h, n):
                    worst = max(worst, s - target(l, h, n))
        if n in (args.max_length // 2, args.max_length):
            keys_orig[n] = sum(attended(sinks[l][h], span(buckets, l, h, n), n) for l in range(L) for h in range(H))
            keys_new[n] = sum(attended(sinks[l][h], span(plan_buckets, l, h, n), n) for l in range(L) for h in range(H))
    if worst > 0:
        raise SystemExit(f"a capped band exceeds its target by up to {worst} tokens: use closer --knots")

    single_sink = all(s == sinks[0][0] for row in sinks for s in row)
    plan = {
        "format": "tern.moa.v1",
        "num_layers": L,
        "num_heads": H,
        "reference_length": args.max_length,
        "sinks": sinks[0][0] if single_sink else sinks,
        "buckets": out_buckets,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(plan, f, separators=(",", ":"))  # compact: a Llama plan has ~1,000 rules a bucket
        f.write("\n")
    print(f"capped plan {args.out}: {L} layers x {H} heads, every head within {args.cap} of the context up to "
          f"{args.max_length} tokens ({len(out_buckets)} buckets)")
    for n in sorted(keys_orig):
        print(f"  density at {n}: {keys_orig[n] / (L * H * n):.3f} before, {keys_new[n] / (L * H * n):.3f} capped")


if __name__ == "__main__":
    main()
