#!/usr/bin/env python3
"""tools/trace/summarize_trace.py on a hand-made trace whose answers are known.

Three whole steps open with an embedding kernel. In each, a GEMM overlaps its
predecessor by 2 us (as a PDL launch does) and an idle gap of 3 us precedes
the norm, so span, exclusive and idle times differ in known ways.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "trace", "summarize_trace.py")
EMBED = "_ZN4tern7kernels12_GLOBAL__N_115EmbeddingKernelI6__halfEEvlPKiPKT_PS4_l"
GEMM = "_ZN4tern7kernels12_GLOBAL__N_116SkinnyGemmKernelI6__halfLi1EEEvNS0_16SkinnyGemmParamsEPKT_S7_PS5_"
NORM = "RowNormKernel"


def step_rows(t0):
    us = 1000
    # (start, end, name): embed 0-2, norm 5-7 (3 us idle before it), gemm 5-20
    # (starts with the norm, overlapping it), norm again 20-22.
    return [(t0, t0 + 2 * us, EMBED), (t0 + 5 * us, t0 + 7 * us, NORM), (t0 + 5 * us, t0 + 20 * us, GEMM),
            (t0 + 20 * us, t0 + 22 * us, NORM)]


class SummarizeTraceTest(unittest.TestCase):
    def run_script(self, rows, *extra):
        with tempfile.TemporaryDirectory() as tmp:
            trace, out = os.path.join(tmp, "trace.csv"), os.path.join(tmp, "out.json")
            with open(trace, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["start_ns", "end_ns", "stream", "grid_x", "grid_y", "grid_z", "block_x", "registers",
                            "name"])
                for start, end, name in rows:
                    w.writerow([start, end, 7, 1, 1, 1, 256, 32, name])
            proc = subprocess.run([sys.executable, SCRIPT, trace, "--json", out, *extra], capture_output=True,
                                  text=True)
            result = json.load(open(out)) if proc.returncode == 0 else None
            return proc, result

    def test_step_span_exclusive_and_idle(self):
        period = 30_000  # a step every 30 us: 8 us idle after the last norm
        rows = [r for s in range(4) for r in step_rows(s * period)]
        proc, result = self.run_script(rows, "--steps", "3")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(len(result["all_steps_us"]), 3)  # whole steps only: the fourth has no end
        self.assertAlmostEqual(result["step_us"], 30.0)
        self.assertAlmostEqual(result["busy_us"], 2 + 2 + 13 + 2)  # the gemm adds 13 us past the norm
        table = {row["kernel"]: row for row in result["table"]}
        self.assertAlmostEqual(table["SkinnyGemmKernel"]["span_us"], 15.0)
        self.assertAlmostEqual(table["SkinnyGemmKernel"]["exclusive_us"], 13.0)
        self.assertEqual(table["RowNormKernel"]["count"], 2)
        self.assertAlmostEqual(table["RowNormKernel"]["exclusive_us"], 4.0)
        # Demangled and shortened when c++filt is there, else the raw name.
        self.assertTrue("EmbeddingKernel" in table or EMBED in table)

    def test_too_few_markers_is_an_error(self):
        proc, _ = self.run_script(step_rows(0))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("fewer than two", proc.stderr)


if __name__ == "__main__":
    unittest.main()
