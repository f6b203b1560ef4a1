#!/usr/bin/env python3
"""tools/moa/cap_plan.py on a hand-made MoA-format plan whose capped spans are known.

Two layers of two heads, read as a 64-token sink and a band of alpha - 64 + beta * N: a head that
attends everything (beta 1), a fixed 1,000-token cache, a head whose band is clamped to one token
below N = 2,048 (alpha -960, beta 0.5) and a narrow head (256 + N / 16) that the cap of half the
context never touches above 1,024 tokens.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "moa", "cap_plan.py")
ALPHAS = [[0.0, 1000.0], [-960.0, 256.0]]
BETAS = [[1.0, 0.0], [0.5, 0.0625]]
SINK = 64


def original_span(l, h, n):
    w = math.floor(ALPHAS[l][h] - SINK + BETAS[l][h] * n)
    return 1 if w < 1 else min(w, n)


def written_span(plan, l, h, n):
    for b in plan["buckets"]:
        if "max_length" not in b or n <= b["max_length"]:
            break
    w = math.floor(b["betas"][l][h] * n + b["alphas"][l][h])
    return 1 if w < 1 else min(w, n)


class CapPlanTest(unittest.TestCase):
    def run_tool(self, tmp, *extra):
        src = os.path.join(tmp, "moa.json")
        with open(src, "w") as f:
            json.dump({"alphas": ALPHAS, "betas": BETAS}, f)
        out = os.path.join(tmp, "capped.json")
        proc = subprocess.run([sys.executable, SCRIPT, "--plan", src, "--out", out, *extra],
                              capture_output=True, text=True)
        return proc, out

    def test_caps_every_head_and_keeps_narrower_bands(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc, out = self.run_tool(tmp, "--cap", "0.5", "--max-length", "4096")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            with open(out) as f:
                plan = json.load(f)
            self.assertEqual(plan["format"], "tern.moa.v1")
            self.assertEqual((plan["num_layers"], plan["num_heads"], plan["sinks"]), (2, 2, SINK))
            ends = [b.get("max_length") for b in plan["buckets"]]
            self.assertEqual(ends, [128, 256, 512, 1024, 2048, 3072, None])
            for n in range(1, 4097):
                for l in range(2):
                    for h in range(2):
                        cap = max(1, min(original_span(l, h, n), n // 2 - SINK))
                        self.assertLessEqual(written_span(plan, l, h, n), cap, (n, l, h))
            # tern's checks: betas in [0, 1], no band negative at a bucket's ends.
            start = 1
            for b in plan["buckets"]:
                end = b.get("max_length", 4096)
                for l in range(2):
                    for h in range(2):
                        self.assertTrue(0.0 <= b["betas"][l][h] <= 1.0)
                        for n in (start, end):
                            self.assertGreaterEqual(b["alphas"][l][h] + b["betas"][l][h] * n, 0.0, (n, l, h))
                start = end + 1
            # Where the band is concave (every head but the clamped one) the knots read exactly the cap.
            for n in (1024, 2048, 3072, 4096):
                self.assertEqual(written_span(plan, 0, 0, n), n // 2 - SINK)
                self.assertEqual(written_span(plan, 0, 1, n), min(1000 - SINK, n // 2 - SINK))
                self.assertEqual(written_span(plan, 1, 1, n), min(256 - SINK + n // 16, n // 2 - SINK))
            # The clamped head: one token up to 2,048, then its own band (under the cap) from the knot on.
            self.assertEqual(written_span(plan, 1, 0, 2048), 1)
            self.assertEqual(written_span(plan, 1, 0, 4096), -960 - SINK + 2048)
            self.assertIn("density at 4096", proc.stdout)

    def test_refuses_a_cap_outside_the_unit_interval(self):
        with tempfile.TemporaryDirectory() as tmp:
            proc, out = self.run_tool(tmp, "--cap", "1.5", "--max-length", "4096")
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn("--cap", proc.stderr)
            self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
