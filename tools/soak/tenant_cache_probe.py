#!/usr/bin/env python3
"""Timing probe of the prefix cache across tenants: can one tenant tell, by the clock, that another
tenant has sent a prompt?

Starts ternd (from --build) serving the demo LLM with tenants alpha and beta, then for each of
--rounds fresh prompts (about --words words of WikiText-2, a different passage each round, never
sent before) times four whole /v1/completions calls with max_tokens 1, whose time is the prompt's
prefill:

  cold        alpha sends the prompt for the first time
  same        alpha sends it again: its own cached blocks serve it (a hit)
  cross       beta sends the prompt alpha has sent: must cost what cold costs (no hit)
  cross again beta sends it again: beta's own copy serves it

and reads usage.prompt_tokens_details.cached_tokens of each. Prints the median time of each kind,
cross / cold (about 1 when nothing leaks), same / cold, and the cached tokens seen; writes JSON with
--json. Exit status 0 when beta's first call never saw a cached token and cross / cold stays above
--min-cross-ratio.

  tools/soak/tenant_cache_probe.py --build build --rounds 20 --json probe.json

Standard library only; needs ternd in BUILD/bin.
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import KEYS, LLM, ROOT, http_request, start_ternd  # noqa: E402


def passages(words_per_prompt, rounds, seed):
    """Distinct passages of WikiText-2's test text, each WORDS_PER_PROMPT words, in a seeded order."""
    with open(os.path.join(ROOT, "tests", "data", "text", "wikitext-2-test.txt"), encoding="utf-8") as f:
        words = f.read().split()
    starts = list(range(0, len(words) - words_per_prompt, words_per_prompt))
    random.Random(seed).shuffle(starts)
    if len(starts) < rounds:
        sys.exit(f"the text holds {len(starts)} passages of {words_per_prompt} words; asked for {rounds}")
    return [" ".join(words[s:s + words_per_prompt]) for s in starts[:rounds]]


def timed_completion(port, key, prompt):
    body = json.dumps({"model": LLM, "prompt": prompt, "max_tokens": 1, "temperature": 0})
    start = time.perf_counter()
    status, reply = http_request(port, "POST", "/v1/completions", body,
                                 {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=300)
    seconds = time.perf_counter() - start
    if status != 200:
        sys.exit(f"/v1/completions answered {status}: {reply[:200]}")
    usage = json.loads(reply)["usage"]
    return seconds, usage["prompt_tokens"], usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory with bin/ternd")
    ap.add_argument("--backend", default="cpu", help="the LLM's backend: cpu, cuda or auto (default cpu)")
    ap.add_argument("--rounds", type=int, default=20, help="fresh prompts to probe with (default 20)")
    ap.add_argument("--words", type=int, default=600, help="words per prompt (default 600)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-cross-ratio", type=float, default=0.8,
                    help="fail when median(cross) / median(cold) falls below this (default 0.8)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    if args.rounds < 1 or args.words < 16:
        sys.exit("--rounds must be >= 1 and --words >= 16")

    work = tempfile.mkdtemp(prefix="tern-probe-")
    config = {
        "models": [dict({"name": LLM, "path": os.path.join(ROOT, "models", LLM), "backend": args.backend},
                        **({"cpuKvCacheMib": 256} if args.backend == "cpu" else {}))],
        "tenants": [{"name": "alpha", "apiKeys": [KEYS["alpha"]]}, {"name": "beta", "apiKeys": [KEYS["beta"]]}],
    }
    daemon, _, port, log = start_ternd(os.path.join(os.path.abspath(args.build), "bin"), config, work)
    kinds = ("cold", "same", "cross", "cross_again")
    times = {k: [] for k in kinds}
    cached = {k: [] for k in kinds}
    prompt_tokens = []
    try:
        timed_completion(port, KEYS["alpha"], "warm up the engine")  # first-call costs out of the figures
        for prompt in passages(args.words, args.rounds, args.seed):
            for kind, key in zip(kinds, (KEYS["alpha"], KEYS["alpha"], KEYS["beta"], KEYS["beta"])):
                seconds, tokens, hits = timed_completion(port, key, prompt)
                times[kind].append(seconds)
                cached[kind].append(hits)
            prompt_tokens.append(tokens)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()

    median = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "rounds": args.rounds, "backend": args.backend, "prompt_tokens_median": statistics.median(prompt_tokens),
        "median_seconds": median, "cached_tokens": cached,
        "cross_over_cold": median["cross"] / median["cold"], "same_over_cold": median["same"] / median["cold"],
    }
    print(f"{args.rounds} fresh prompts of {report['prompt_tokens_median']:.0f} tokens (median), "
          f"{args.backend} backend; median seconds per call with max_tokens 1:")
    for kind in kinds:
        print(f"  {kind:<12} {median[kind] * 1e3:8.1f} ms   cached tokens: min {min(cached[kind])}, "
              f"max {max(cached[kind])}")
    print(f"  cross / cold {report['cross_over_cold']:.3f}   same / cold {report['same_over_cold']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    leaked = max(cached["cross"]) > 0 or report["cross_over_cold"] < args.min_cross_ratio
    if leaked:
        print("FAILED: beta's first call reused alpha's blocks, or cost clearly less than a cold prefill")
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
