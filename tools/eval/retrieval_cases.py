#!/usr/bin/env python3
"""Writes line-retrieval cases (the LongEval "lines" needle test of tools/train/retrieval.py, the
format tern-demo-llm was trained and evaluated on) as JSON lines for tern-retrieval, which scores
them through tern's own tokenizer, model and backend (MoA plans and KV cache types included).

    python3 tools/eval/retrieval_cases.py --lengths 512 1024 2048 --cases 200 --out cases.jsonl

Each line: {"length", "preamble", "lines": [...], "needle", "question", "answer_prefix", "value"}.
The record holds more lines than fit; tern-retrieval drops lines other than the needle (from the
end) until the prompt fits `length` tokens with room for the answer. Needs no torch or tokenizer.
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
import retrieval  # noqa: E402

# About 9 tokens a line in the demo tokenizer: a record of length / 7 lines always overfills.
LINES_PER_TOKEN = 1 / 7


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--cases", type=int, default=200, help="cases per length")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.out, "w") as out:
        for length in args.lengths:
            rng = random.Random(args.seed * 100003 + length)
            for _ in range(args.cases):
                record = retrieval.make_record(rng, max(2, int(length * LINES_PER_TOKEN)))
                needle = rng.randrange(len(record))
                key, value = record[needle]
                answer = retrieval.answer_text(key, value)
                case = {
                    "length": length,
                    "preamble": retrieval.PREAMBLE,
                    "lines": [retrieval.line_text(k, v) for k, v in record],
                    "needle": needle,
                    "question": retrieval.first_question(key),
                    "answer_prefix": answer[: answer.index("<") + 1],
                    "value": str(value),
                }
                out.write(json.dumps(case) + "\n")


if __name__ == "__main__":
    main()
