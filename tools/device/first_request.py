#!/usr/bin/env python3
"""Time to first token of the first requests a fresh ternd serves.

Sends --requests completions one after another through ternd's OpenAI HTTP
API, each a distinct prompt of about --words random words (so no prefix is
cached) and max_tokens 1, and prints each one's latency and prompt tokens:
the first request against the later ones shows whether start-up warmed the
prefill shapes. Standard library only.

  first_request.py --port HTTP_PORT --model NAME [--requests 4] [--words 1800] [--json OUT]
"""
import argparse
import json
import random
import time
import urllib.request

WORDS = ("the of and to in is was for on that with as by at from his her an were are which this be has "
         "had not first one their its new after who they have two been other when there all during into "
         "school time may years more most only over city some world would where later up such used many "
         "can state about national out known university united then made").split()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--words", type=int, default=1800)
    p.add_argument("--json")
    a = p.parse_args()
    rows = []
    for i in range(a.requests):
        rng = random.Random(1000 + i)
        prompt = " ".join(rng.choice(WORDS) for _ in range(a.words))
        body = json.dumps({"model": a.model, "prompt": prompt, "max_tokens": 1, "temperature": 0}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{a.port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            reply = json.load(r)
        ms = (time.perf_counter() - start) * 1e3
        tokens = reply["usage"]["prompt_tokens"]
        rows.append({"request": i, "latency_ms": ms, "prompt_tokens": tokens,
                     "prefill_tokens_per_s": tokens / (ms / 1e3)})
        print(f"  request {i}: {tokens} prompt tokens in {ms:.1f} ms ({tokens / (ms / 1e3):,.0f} tokens/s)")
    later = min(r["latency_ms"] for r in rows[1:]) if len(rows) > 1 else float("nan")
    print(f"  first / best later: {rows[0]['latency_ms'] / later:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"requests": rows, "first_over_best_later": rows[0]["latency_ms"] / later}, f, indent=1)


if __name__ == "__main__":
    main()
