#!/usr/bin/env python3
"""Per-step kernel tables from a libtern-kernel-trace.so CSV.

A step starts at each launch of the marker kernel (default: the embedding
lookup, the first kernel of every forward pass). For the last --steps steps it
prints the median step's wall time, the time kernels were running, the idle
gaps between them, and per kernel name: launches, span and exclusive time.

    tools/trace/summarize_trace.py trace.csv [--marker Embedding] [--steps 16] [--json out.json]
"""
import argparse
import csv
import json
import re
import statistics
import subprocess
from collections import defaultdict


def short_name(mangled, cache={}):
    if mangled in cache:
        return cache[mangled]
    name = mangled
    try:
        name = subprocess.run(["c++filt", mangled], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    # Drop namespaces, template arguments and parameter lists.
    name = name.replace("(anonymous namespace)", "anon")
    name = re.sub(r"\(.*\)$", "", name)
    while re.search(r"<[^<>]*>", name):
        name = re.sub(r"<[^<>]*>", "", name)
    name = name.split("::")[-1].strip() or mangled
    cache[mangled] = name
    return name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--marker", default="Embedding", help="substring of the kernel that opens a step")
    ap.add_argument("--steps", type=int, default=16, help="how many of the last steps to summarize")
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args()

    with open(args.csv) as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["start_ns"]))
    kernels = [(int(r["start_ns"]), int(r["end_ns"]), short_name(r["name"])) for r in rows]
    starts = [i for i, k in enumerate(kernels) if args.marker in k[2]]
    if len(starts) < 2:
        raise SystemExit(f"fewer than two '{args.marker}' kernels in {args.csv}")
    # Whole steps only: each runs from one marker to the next.
    bounds = list(zip(starts[:-1], starts[1:]))[-args.steps:]
    steps = []
    for a, b in bounds:
        step = kernels[a:b]
        wall = kernels[b][0] - step[0][0]
        busy, last_end = 0, step[0][0]
        per_name = defaultdict(lambda: [0, 0, 0])
        for start, end, name in step:
            # Exclusive time: what this kernel adds past the end of the ones
            # before it. With programmatic dependent launch a kernel starts
            # (and waits) while its predecessor runs, so its span overlaps.
            exclusive = max(0, end - max(start, last_end))
            busy += exclusive
            last_end = max(last_end, end)
            per_name[name][0] += 1
            per_name[name][1] += end - start
            per_name[name][2] += exclusive
        steps.append({"wall": wall, "busy": busy, "kernels": len(step), "per_name": per_name})
    median = sorted(steps, key=lambda s: s["wall"])[len(steps) // 2]
    print(f"{len(steps)} steps; median step {median['wall'] / 1e3:.1f} us, {median['kernels']} kernels, "
          f"busy {median['busy'] / 1e3:.1f} us, idle {(median['wall'] - median['busy']) / 1e3:.1f} us "
          f"(steps {min(s['wall'] for s in steps) / 1e3:.1f}-{max(s['wall'] for s in steps) / 1e3:.1f} us)")
    print("span: first start to last end of each launch; exclusive: time past the end of all earlier kernels")
    print(f"{'kernel':36s} {'count':>6s} {'span us':>9s} {'mean':>7s} {'excl us':>9s} {'mean':>7s} {'share':>6s}")
    table = []
    for name, (count, total, exclusive) in sorted(median["per_name"].items(), key=lambda kv: -kv[1][2]):
        share = exclusive / median["wall"]
        print(f"{name[:36]:36s} {count:6d} {total / 1e3:9.1f} {total / count / 1e3:7.2f} {exclusive / 1e3:9.1f} "
              f"{exclusive / count / 1e3:7.2f} {share:6.1%}")
        table.append({"kernel": name, "count": count, "span_us": total / 1e3, "exclusive_us": exclusive / 1e3})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"step_us": median["wall"] / 1e3, "busy_us": median["busy"] / 1e3,
                       "kernels": median["kernels"], "table": table,
                       "all_steps_us": [s["wall"] / 1e3 for s in steps]}, f, indent=1)


if __name__ == "__main__":
    main()
