#!/usr/bin/env python3
"""tern-run --dump-logits on the CPU backend with the demo model: greedy
dumps, teacher-forced dumps (--force-tokens) and bad ids.

  tern_run_dump_test.py TERN_RUN MODEL_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

TERN_RUN, MODEL = sys.argv[1], sys.argv[2]
PROMPT = [5, 17, 99, 3, 42, 7]


def dump(*flags):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dump.json")
        run = subprocess.run([TERN_RUN, "--model", MODEL, "--backend", "cpu", "--dump-logits", path,
                              "--token-ids", ",".join(map(str, PROMPT)), *flags],
                             capture_output=True, text=True, timeout=120)
        steps = json.load(open(path))["steps"] if run.returncode == 0 else None
        return run, steps


def argmax(values):
    return max(range(len(values)), key=values.__getitem__)


class TernRunDumpTest(unittest.TestCase):
    def test_forcing_the_greedy_tokens_reproduces_the_greedy_dump(self):
        run, greedy = dump("--decode-tokens", "4")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(len(greedy), 5)
        for step in greedy:
            self.assertEqual(step["token"], argmax(step["logits"]))
        tokens = [s["token"] for s in greedy]
        run, forced = dump("--force-tokens", ",".join(map(str, tokens[:-1])))
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual([s["logits"] for s in forced], [s["logits"] for s in greedy])

    def test_forced_tokens_replace_the_greedy_picks(self):
        _, greedy = dump("--decode-tokens", "2")
        other = [(greedy[0]["token"] + 1) % len(greedy[0]["logits"]), 11]
        run, forced = dump("--force-tokens", ",".join(map(str, other)))
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(len(forced), 3)
        self.assertEqual(forced[0]["logits"], greedy[0]["logits"])  # the prompt step is the same
        self.assertNotEqual(forced[1]["logits"], greedy[1]["logits"])  # fed another token

    def test_bad_ids_are_refused_with_a_message(self):
        for flags, message in [(["--force-tokens", "1,x"], "not a token id"),
                               (["--force-tokens", "-3"], "not a token id"),
                               (["--force-tokens", "100000000"], "outside the vocabulary")]:
            run, _ = dump(*flags)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn(message, run.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
