#!/usr/bin/env python3
"""tools/moa/search.py on hand-made profiles whose best plans are known.

Four layers of two heads, one length of 1,024 tokens in blocks of 64. In layer 0 both heads put their
influence on the first key block after the sink (a needle far back); in layers 1-3 the influence lies
on each query's own block (local heads). Under a mean density of 0.5:
- with --max-head-density 0.5 no head reads more than half the context, so layer 0's heads stop at
  the cap and the far block is dropped;
- with --max-layer-density 0.5 the search keeps layer 0 whole and narrows the local layers, so the
  widest heads' mean stays at 0.5 and nothing of the needle is dropped.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "moa")
sys.path.insert(0, TOOLS)
import influence_file  # noqa: E402

LAYERS, HEADS, LENGTH, BLOCK = 4, 2, 1024, 64
NB = LENGTH // BLOCK


def write_profile(stem):
    values = []
    for layer in range(LAYERS):
        for _ in range(HEADS):
            for qb in range(NB):
                row = [0.0] * NB
                if layer == 0:
                    row[min(1, qb)] = 1.0  # the block after the sink
                else:
                    row[qb] = 1.0  # the query's own block
                values.extend(row)
    influence_file.write(stem, {"length": LENGTH, "block": BLOCK, "num_layers": LAYERS, "num_heads": HEADS,
                                "num_blocks": NB, "sequences": 1, "model": "hand-made"}, values)


def densities(plan, n):
    """Each layer's heads' density at n (sink and band, as tern attends them)."""
    bucket = [b for b in plan["buckets"] if b.get("max_length", 1 << 30) >= n][0]
    sink = min(plan["sinks"], n)
    out = []
    for alphas, betas in zip(bucket["alphas"], bucket["betas"]):
        row = []
        for a, b in zip(alphas, betas):
            span = max(1, min(n, math.floor(a + b * n)))
            row.append((sink + n - max(sink, n - span)) / n)
        out.append(row)
    return out


class MoaSearchTest(unittest.TestCase):
    def search(self, tmp, name, *extra):
        stem = os.path.join(tmp, "influence_L1024")
        if not os.path.exists(stem + ".json"):
            write_profile(stem)
        out = os.path.join(tmp, name + ".json")
        proc = subprocess.run([sys.executable, os.path.join(TOOLS, "search.py"), "--profile", stem,
                               "--density", "0.5", "--out", out, *extra], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(out) as f:
            return json.load(f), proc.stdout

    def test_head_cap_at_the_density_drops_the_far_block(self):
        with tempfile.TemporaryDirectory() as tmp:
            plan, stdout = self.search(tmp, "head", "--max-head-density", "0.5")
            d = densities(plan, LENGTH)
            self.assertEqual(d[0], [0.5, 0.5])  # layer 0 at the cap, its needle block out of reach
            for row in d:
                for x in row:
                    self.assertLessEqual(x, 0.5)
            self.assertNotIn("dropped influence 0.0000", stdout)

    def test_layer_budget_keeps_the_far_reaching_layer(self):
        with tempfile.TemporaryDirectory() as tmp:
            plan, stdout = self.search(tmp, "layer", "--max-layer-density", "0.5")
            d = densities(plan, LENGTH)
            self.assertEqual(d[0], [1.0, 1.0])  # layer 0 reads its needle block
            widest = [max(row) for row in d]
            self.assertLessEqual(sum(widest) / LAYERS, 0.5 + 1e-9)
            self.assertLessEqual(sum(sum(row) for row in d) / (LAYERS * HEADS), 0.5 + 1e-9)
            self.assertIn("dropped influence 0.0000", stdout)

    def test_refuses_a_layer_budget_below_the_density(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_profile(os.path.join(tmp, "influence_L1024"))
            proc = subprocess.run([sys.executable, os.path.join(TOOLS, "search.py"), "--profile",
                                   os.path.join(tmp, "influence_L1024"), "--density", "0.5",
                                   "--max-layer-density", "0.4", "--out", os.path.join(tmp, "x.json")],
                                  capture_output=True, text=True)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn("--max-layer-density", proc.stderr)


if __name__ == "__main__":
    unittest.main()
