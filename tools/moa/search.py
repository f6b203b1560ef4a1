#!/usr/bin/env python3
"""Searches per-head MoA span rules under an average density budget from profile_influence.py's attention
influence, and writes a tern MoA plan (runtime/model/moa_plan.h, format "tern.moa.v1").

    python3 tools/moa/search.py --profile out/influence_L512 out/influence_L1024 out/influence_L2048 \
        --density 0.5 --density-length 2048 --out plans/moa-50.json
    python3 tools/moa/search.py --profile ... --density 0.5 --density-length 2048 --uniform \
        --out plans/window-50.json      # the uniform sliding-window baseline at the same density

Every head h gets a sink of --sink tokens and a band rule span = alpha + beta * N (N: the tokens a
query sees), as tern attends it: span = clamp(floor(alpha + beta * N), 1, N). The candidates are
alpha in multiples of --alpha-step from -max_length to max_length and beta in --betas, kept when
the band is at least one block at the shortest profiled length and at most the context at the
longest (MoA's elastic search space).

The loss of a rule for a head at a profiled length L is the influence of the keys it drops (a query
block keeps the key blocks that start inside the sink or overlap its band, its band taken at the
block's last query): the first-order increase of the model's loss on its own outputs (profile_influence.py).
Each length's losses are divided by that length's total influence, so every profiled length weighs
the same, and summed. The search picks one rule per head minimising the summed loss subject to the
mean density over all heads of all layers at --density-length (and, with --budget-every-length, at
every profiled length) being at most --density: a multiple-choice knapsack, solved by a Lagrangian
relaxation (bisection on the price of density) and then greedy use of the budget left.

--max-head-density caps every head's own density at the budget lengths (its candidates are only the
rules within it). The mean density sets how much KV a decode step reads; what the cache can give back
is set by the widest head of each KV-cache group of layers (runtime/backend/kv_cache_groups.h: a group
keeps every key some head of its layers reads), so a plan searched with a cap keeps at most that
fraction of every layer's context (plus the sink) and the cache holds correspondingly more sequences.

--max-layer-density bounds the mean over layers of each layer's widest head instead, and picks each
layer's width as well (layer_caps): a plan may then keep a few layers whole and narrow the others,
which per-layer KV-cache groups turn into the same memory as one cap on every head.

Pure Python (no torch or numpy): a Llama-3-8B profile (1024 heads, 8k tokens in blocks of 64) takes
a few minutes; --alpha-step and --betas shrink the search space.
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import influence_file  # noqa: E402


def span(alpha, beta, n):
    """tern's band width (kernels/attention/attention_spans.h): floor(alpha + beta n) in [1, n]."""
    w = math.floor(alpha + beta * n)
    return 1 if w < 1 else min(w, n)


def density(sink, alpha, beta, n):
    """Keys a query that sees n tokens attends, over n (MoaPlan::Density for one head)."""
    s = min(sink, n)
    band = max(s, n - span(alpha, beta, n))
    return (s + n - band) / n


def written_rule(alpha, beta, n, shortest):
    """The rule the written plan applies at n: below the shortest profiled length the first bucket
    holds the elastic rule's width there (alpha + beta * shortest, which the candidates keep at a
    block or more), so no bucket's span is negative; from it on the elastic rule itself."""
    return (alpha + beta * shortest, 0.0) if n < shortest else (alpha, beta)


class Profile:
    """One length's influence with per-row prefix sums, for O(blocks) rule losses."""

    def __init__(self, stem):
        self.meta, values = influence_file.read(stem)
        m = self.meta
        self.length, self.block, self.nb = m["length"], m["block"], m["num_blocks"]
        self.num_layers, self.num_heads = m["num_layers"], m["num_heads"]
        nb = self.nb
        # prefix[head][qb][k] = sum of row qb over key blocks < k (k <= qb + 1)
        self.prefix = []
        self.total = 0.0
        for h in range(self.num_layers * self.num_heads):
            rows = []
            base = h * nb * nb
            for qb in range(nb):
                acc, row = 0.0, [0.0]
                off = base + qb * nb
                for kb in range(qb + 1):
                    acc += abs(values[off + kb])
                    row.append(acc)
                rows.append(row)
                self.total += acc
            self.prefix.append(rows)

    def loss(self, head, sink, alpha, beta, shortest):
        b, nb = self.block, self.nb
        sink_blocks = -(-sink // b)
        lost = 0.0
        for qb in range(nb):
            n = (qb + 1) * b
            band_block = (n - span(*written_rule(alpha, beta, n, shortest), n)) // b
            hi = min(band_block, qb + 1)
            lo = min(sink_blocks, qb + 1)
            if hi > lo:
                row = self.prefix[head][qb]
                lost += row[hi] - row[lo]
        return lost


def candidates(lengths, block, alpha_step, betas):
    lo, hi = min(lengths), max(lengths)
    out = []
    a = -hi
    while a <= hi:
        for beta in betas:
            if a + beta * lo >= block and a + beta * hi <= hi:
                out.append((float(a), float(beta)))
        a += alpha_step
    return out


def solve(losses, dens, budget):
    """losses[h][c], dens[h][c] (density per head, the budget is on their mean). Returns choices."""
    heads = len(losses)
    cap = budget * heads

    def pick(lam):
        return [min(range(len(losses[h])), key=lambda c: (losses[h][c] + lam * dens[h][c], dens[h][c]))
                for h in range(heads)]

    def used(choice):
        return sum(dens[h][c] for h, c in enumerate(choice))

    lo, hi = 0.0, 1.0
    best = pick(lo)
    if used(best) > cap:
        while used(pick(hi)) > cap and hi < 1e12:
            hi *= 4
        for _ in range(80):
            mid = (lo + hi) / 2
            if used(pick(mid)) > cap:
                lo = mid
            else:
                hi = mid
        best = pick(hi)
    if used(best) > cap + 1e-9:
        raise SystemExit(f"no plan meets density {budget}: the narrowest rules take {used(best) / heads:.3f}")
    # Spend what is left: the change with the largest loss drop per density added, while it fits.
    slack = cap - used(best)
    while True:
        move, gain = None, 0.0
        for h in range(heads):
            c0 = best[h]
            for c in range(len(losses[h])):
                extra = dens[h][c] - dens[h][c0]
                drop = losses[h][c0] - losses[h][c]
                if drop <= 0 or extra > slack + 1e-12:
                    continue
                score = drop / max(extra, 1e-9)
                if score > gain:
                    move, gain = (h, c), score
        if move is None:
            break
        h, c = move
        slack -= dens[h][c] - dens[h][best[h]]
        best[h] = c
    return best


def layer_caps(losses, dens, num_layers, budget, retention, units=64):
    """Chooses the widest density each layer's heads may have (its cap) so that the caps' mean over
    the layers is at most `retention`, for the per-head rules (losses[h][c], dens[h][c], heads layer
    by layer) then to meet the mean density `budget` at the least loss. For a price lam on density,
    each layer's cost at a cap is the sum over its heads of the best loss + lam * density within it,
    and an exact knapsack over the layers (caps rounded up to 1/`units`) picks the caps; lam is
    bisected until the heads' choices meet the density budget. Returns the caps, one per layer."""
    heads = len(losses)
    per_layer = heads // num_layers
    caps = sorted(set(d for row in dens for d in row))
    cap_units = [math.ceil(c * units - 1e-9) for c in caps]
    limit = math.floor(retention * num_layers * units + 1e-9)
    # Each head's rules by density, so a cap's best rule is a prefix minimum.
    order = [sorted(range(len(dens[h])), key=lambda c: dens[h][c]) for h in range(heads)]

    def choose(lam):
        cost = [[0.0] * len(caps) for _ in range(num_layers)]
        pick = [[None] * len(caps) for _ in range(heads)]
        for h in range(heads):
            best, arg, i = math.inf, None, 0
            for j, cap in enumerate(caps):
                while i < len(order[h]) and dens[h][order[h][i]] <= cap + 1e-12:
                    c = order[h][i]
                    v = losses[h][c] + lam * dens[h][c]
                    if v < best:
                        best, arg = v, c
                    i += 1
                pick[h][j] = arg
                cost[h // per_layer][j] += best
        # Knapsack over the layers: dp[u] = least cost of the layers so far with caps summing to u units.
        dp = {0: (0.0, [])}
        for layer in range(num_layers):
            nxt = {}
            for used, (total, chosen) in dp.items():
                for j in range(len(caps)):
                    u = used + cap_units[j]
                    if u > limit or cost[layer][j] == math.inf:
                        continue
                    v = total + cost[layer][j]
                    if u not in nxt or v < nxt[u][0]:
                        nxt[u] = (v, chosen + [j])
            dp = nxt
        if not dp:
            raise SystemExit(f"no plan keeps the layers' widest heads within {retention} on average")
        chosen = min(dp.values(), key=lambda t: t[0])[1]
        used = sum(dens[h][pick[h][chosen[h // per_layer]]] for h in range(heads))
        return [caps[j] for j in chosen], used

    cap_total = budget * heads
    lo, hi = 0.0, 1.0
    best, used = choose(lo)
    if used > cap_total:
        while choose(hi)[1] > cap_total and hi < 1e12:
            hi *= 4
        for _ in range(60):
            mid = (lo + hi) / 2
            if choose(mid)[1] > cap_total:
                lo = mid
            else:
                hi = mid
        best, used = choose(hi)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", nargs="+", required=True, help="influence file stems from profile_influence.py")
    ap.add_argument("--density", type=float, required=True, help="mean density budget, in (0, 1]")
    ap.add_argument("--density-length", type=int, default=0, help="length the budget holds at (default: longest profile)")
    ap.add_argument("--budget-every-length", action="store_true", help="also hold the budget at every profiled length")
    ap.add_argument("--sink", type=int, default=0, help="sink tokens of every head (default: one block)")
    ap.add_argument("--alpha-step", type=int, default=0, help="alpha grid step (default: one block)")
    ap.add_argument("--betas", type=float, nargs="+", default=[i / 16 for i in range(17)])
    ap.add_argument("--max-head-density", type=float, default=1.0,
                    help="cap on each head's own density at the budget lengths, in (0, 1] (default 1: none); "
                         "bounds what every layer's KV-cache group keeps")
    ap.add_argument("--max-layer-density", type=float, default=1.0,
                    help="bound on the mean over layers of each layer's widest head density at the budget "
                         "lengths, in (0, 1] (default 1: none); the search also picks each layer's width")
    ap.add_argument("--uniform", action="store_true",
                    help="write the uniform sliding window at the density instead (every head alike)")
    ap.add_argument("--out", required=True, help="the tern plan to write")
    args = ap.parse_args()
    if not 0 < args.density <= 1:
        raise SystemExit("--density must be in (0, 1]")
    if any(not 0 <= b <= 1 for b in args.betas):
        raise SystemExit("--betas must lie in [0, 1]")
    if not 0 < args.max_head_density <= 1:
        raise SystemExit("--max-head-density must be in (0, 1]")
    if args.max_head_density < args.density:
        raise SystemExit("--max-head-density must be at least --density")
    if not 0 < args.max_layer_density <= 1:
        raise SystemExit("--max-layer-density must be in (0, 1]")
    if args.max_layer_density < args.density:
        raise SystemExit("--max-layer-density must be at least --density")

    profiles = [Profile(stem) for stem in args.profile]
    profiles.sort(key=lambda p: p.length)
    first = profiles[0]
    for p in profiles:
        if (p.num_layers, p.num_heads, p.block) != (first.num_layers, first.num_heads, first.block):
            raise SystemExit("the profiles are of different models or block sizes")
    block = first.block
    lengths = [p.length for p in profiles]
    ref = args.density_length or max(lengths)
    sink = args.sink or block
    heads = first.num_layers * first.num_heads
    budget_lengths = sorted(set([ref] + (lengths if args.budget_every_length else [])))

    if args.uniform:
        window = max(1, round(args.density * ref) - sink)
        chosen = [(float(window), 0.0)] * heads
        rules = chosen
    else:
        rules = candidates(lengths, block, args.alpha_step or block, args.betas)
        if not rules:
            raise SystemExit("no candidate rule: widen --betas or lower --alpha-step")
        weights = [1.0 / p.total if p.total > 0 else 0.0 for p in profiles]
        losses = [[sum(w * p.loss(h, sink, a, b, min(lengths)) for p, w in zip(profiles, weights)) for a, b in rules]
                  for h in range(heads)]
        # The tightest of the budget lengths decides feasibility: density at each must stay under it.
        rule_dens = [max(density(sink, *written_rule(a, b, n, min(lengths)), n) for n in budget_lengths)
                     for a, b in rules]
        # Each head's own cap: only the rules within it are candidates.
        allowed = [c for c, d in enumerate(rule_dens) if d <= args.max_head_density + 1e-12]
        if not allowed:
            raise SystemExit(f"no candidate rule within --max-head-density {args.max_head_density}")
        dens = [[rule_dens[c] for c in allowed] for _ in range(heads)]
        losses = [[row[c] for c in allowed] for row in losses]
        if args.max_layer_density < 1:
            # Each layer's own cap, under the bound on their mean; then the heads within their layer's.
            caps = layer_caps(losses, dens, first.num_layers, args.density, args.max_layer_density)
            within = [[c for c in range(len(allowed)) if dens[h][c] <= caps[h // first.num_heads] + 1e-12]
                      for h in range(heads)]
            sub = solve([[losses[h][c] for c in within[h]] for h in range(heads)],
                        [[dens[h][c] for c in within[h]] for h in range(heads)], args.density)
            choice = [within[h][c] for h, c in enumerate(sub)]
        else:
            choice = solve(losses, dens, args.density)
        chosen = [rules[allowed[c]] for c in choice]

    L, H = first.num_layers, first.num_heads
    shortest = min(lengths)
    buckets = [{
        "alphas": [[chosen[l * H + h][0] for h in range(H)] for l in range(L)],
        "betas": [[chosen[l * H + h][1] for h in range(H)] for l in range(L)],
    }]
    if shortest > 1 and not args.uniform:
        buckets.insert(0, {
            "max_length": shortest - 1,
            "alphas": [[chosen[l * H + h][0] + chosen[l * H + h][1] * shortest for h in range(H)] for l in range(L)],
            "betas": [[0.0] * H for _ in range(L)],
        })
    plan = {
        "format": "tern.moa.v1",
        "num_layers": L,
        "num_heads": H,
        "reference_length": ref,
        "sinks": sink,
        "buckets": buckets,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(plan, f, indent=1)
    mean = {n: sum(density(sink, *written_rule(a, b, n, shortest), n) for a, b in chosen) / heads
            for n in sorted(set(lengths + [ref]))}
    weights = [1.0 / p.total if p.total > 0 else 0.0 for p in profiles]
    loss = {p.length: sum(w * p.loss(h, sink, a, b, shortest) for h, (a, b) in enumerate(chosen))
            for p, w in zip(profiles, weights)}
    print(f"{'uniform window' if args.uniform else 'MoA'} plan {args.out}: {L} layers x {H} heads, sink {sink}")
    for n, d in mean.items():
        widest = [max(density(sink, *written_rule(a, b, n, shortest), n) for a, b in chosen[l * H:(l + 1) * H])
                  for l in range(L)]
        print(f"  density at {n}: {d:.3f}" + (f", dropped influence {loss[n]:.4f}" if n in loss else "") +
              f"; widest head per layer: mean {sum(widest) / L:.3f}, max {max(widest):.3f}")


if __name__ == "__main__":
    main()
