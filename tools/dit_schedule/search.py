#!/usr/bin/env python3
"""Searches a DiT sampler schedule (per step: timestep and solver order) for a step budget, USF /
OMS-DPM style, and reports quality against steps. Standard library + numpy; images come from
tern-dit-sample (this directory: the tern pipeline on the CPU ops), scores from
tools/eval/score_dit_images.py's classifier and Frechet distance.

search: for each budget S (--steps 5,6,8,10)
  1. reference images: dpmpp2m at --reference-steps (100) on the SEARCH seeds (--search-seed-base,
     disjoint from the reporting seeds), a close approximation of the probability-flow ODE's end;
  2. objective of a schedule: mean squared pixel error (pixels / 255) of its images on the same
     seeds against the reference (how far the few-step solve lands from the converged one: no
     class labels, no test-set statistics, nothing of the reporting seeds);
  3. start from the best of three spacings with orders 1, 2, ..., 2, 1: uniform in t (dpmpp2m's
     own), quadratic in t (denser near t = 0) and uniform in log-SNR;
  4. coordinate descent: each timestep in turn moved up or down by a fraction of its gap to its
     neighbours (kept if the objective falls), then each inner step's order toggled 1 <-> 2; the
     fraction shrinks each round (--rounds).
  Writes OUT_DIR/schedule-S.json (tern's schedule format, with how it was found as metadata) and
  OUT_DIR/search-S.json (every candidate and its objective).

report: per step count, dpmpp2m's default timesteps and the searched schedule on the REPORTING seeds
  (tools/eval/eval_dit.py's: class c, image j has seed 100000 + 100 c + j, j < --per-class): class
  accuracy, Frechet distance against the stored test-set statistics, images/s of tern-dit-sample
  (generation only, this machine's CPU). Writes OUT_DIR/report.json and prints a markdown table.

  tools/dit_schedule/search.py search --bin build/bin --out-dir /tmp/dit-schedule [--steps 5,6,8,10]
  tools/dit_schedule/search.py report --bin build/bin --out-dir /tmp/dit-schedule \\
      --schedules /tmp/dit-schedule [--steps 5,6,8,10,20] [--per-class 20]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
import score_dit_images  # noqa: E402

T = 1000  # the demo DiT's training timesteps (checked against config.json)
REPORT_SEED_BASE, SEED_STRIDE = 100000, 100


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["search", "report"])
    ap.add_argument("--bin", required=True, help="a build's bin/ holding tern-dit-sample")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "tern-demo-dit"))
    ap.add_argument("--classifier", default=os.path.join(ROOT, "models", "fmnist-classifier"))
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--steps", default="", help="step budgets (search: 5,6,8,10; report: 5,6,8,10,20)")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--search-seed-base", type=int, default=700000,
                    help="search seeds: base + 100 c + j; must not meet the reporting seeds")
    ap.add_argument("--search-per-class", type=int, default=1)
    ap.add_argument("--reference-steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--schedules", default="", help="report: directory of schedule-S.json files")
    ap.add_argument("--per-class", type=int, default=20, help="report: images per class")
    ap.add_argument("--rows", default="both", choices=["both", "dpmpp2m", "searched"],
                    help="report: which rows to make (both: dpmpp2m's default timesteps and the searched schedule)")
    a = ap.parse_args()
    if not a.steps:
        a.steps = "5,6,8,10" if a.mode == "search" else "5,6,8,10,20"
    a.steps = [int(s) for s in a.steps.split(",")]
    lo, hi = a.search_seed_base, a.search_seed_base + SEED_STRIDE * 9 + a.search_per_class
    if a.mode == "search" and lo < REPORT_SEED_BASE + SEED_STRIDE * 10 and hi > REPORT_SEED_BASE:
        ap.error(f"search seeds [{lo}, {hi}) meet the reporting seeds from {REPORT_SEED_BASE}")
    return a


# --- the model's noise schedule (linear betas, as runtime/dit/noise_schedule.h) ---

def log_snr_table(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    ns = cfg.get("noise_schedule", {})
    t = int(ns.get("num_train_timesteps", T))
    betas = np.linspace(float(ns.get("beta_start", 1e-4)), float(ns.get("beta_end", 0.02)), t)
    abar = np.cumprod(1.0 - betas)
    return t, 0.5 * np.log(abar / (1.0 - abar))


# --- schedules ---

def uniform_timesteps(t, s):
    """runtime/dit/noise_schedule.h's SamplingTimesteps."""
    return [(t - 1) * (s - 1 - i) // (s - 1) for i in range(s)] if s > 1 else [t - 1]


def default_orders(s):
    return [1 if i in (0, s - 1) else 2 for i in range(s)]


def strictly_decreasing(ts):
    out = []
    for v in ts:
        v = int(v)
        if out and v >= out[-1]:
            v = out[-1] - 1
        out.append(v)
    return out if out[-1] >= 0 else None


def quadratic_timesteps(t, s):
    return strictly_decreasing([round((t - 1) * ((s - 1 - i) / (s - 1)) ** 2) for i in range(s)])


def log_snr_timesteps(t, s, lam):
    targets = np.linspace(lam[t - 1], lam[0], s)
    return strictly_decreasing([int(np.argmin(np.abs(lam - v))) for v in targets][::1])


def valid(ts, orders, t):
    return (all(0 <= v < t for v in ts) and all(a > b for a, b in zip(ts, ts[1:]))
            and all(o in (1, 2) for o in orders) and orders[0] == 1 and orders[-1] == 1)


def write_schedule(path, ts, orders, t, metadata=None):
    doc = {"format": "tern-sampler-schedule", "version": 1, "num_train_timesteps": t,
           "steps": [{"timestep": int(v), "order": int(o)} for v, o in zip(ts, orders)],
           "metadata": metadata or {}}
    with open(path, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")


def read_schedule(path):
    with open(path) as f:
        doc = json.load(f)
    return [s["timestep"] for s in doc["steps"]], [s["order"] for s in doc["steps"]], doc


# --- images ---

def sample(a, out, seed_base, per_class, schedule=None, sampler="dpmpp2m", steps=20):
    cmd = [os.path.join(a.bin, "tern-dit-sample"), "--model", a.model, "--guidance", str(a.guidance),
           "--classes", "0-9", "--per-class", str(per_class), "--seed-base", str(seed_base),
           "--seed-stride", str(SEED_STRIDE), "--out", out]
    cmd += ["--schedule", schedule] if schedule else ["--sampler", sampler, "--steps", str(steps)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {run.stderr.strip()}")
    info = json.loads(run.stdout.strip().splitlines()[-1])
    u8 = np.fromfile(out, np.uint8).reshape(info["images"], info["height"], info["width"])
    return u8, info


class Scorer:
    def __init__(self, classifier):
        stored, meta = score_dit_images.st_io.load(score_dit_images.DEFAULT_REFERENCE)
        if meta.get("classifier_sha256") != score_dit_images.weights_sha256(classifier):
            sys.exit("the stored test-set statistics were computed with other classifier weights")
        self.mu, self.cov = stored["mean"], stored["covariance"]
        self.clf = score_dit_images.FmnistClassifier.load(classifier)

    def __call__(self, u8, labels):
        feats, logits = self.clf.run(score_dit_images.to_model_space(u8))
        mu, cov = score_dit_images.gaussian_stats(feats)
        return {"class_accuracy": float((logits.argmax(1) == labels).mean()),
                "fd": float(score_dit_images.frechet_distance_stats(mu, cov, self.mu, self.cov))}


# --- search ---

def search(a):
    t, lam = log_snr_table(a.model)
    os.makedirs(a.out_dir, exist_ok=True)
    scratch = os.path.join(a.out_dir, "scratch")
    os.makedirs(scratch, exist_ok=True)
    ref_path = os.path.join(scratch, f"reference-{a.reference_steps}-{a.guidance}-{a.search_seed_base}-"
                                     f"{a.search_per_class}.u8")
    started = time.time()
    if os.path.exists(ref_path):  # the same reference run, made by an earlier search
        ref = np.fromfile(ref_path, np.uint8).reshape(10 * a.search_per_class, 32, 32)
    else:
        ref, _ = sample(a, ref_path, a.search_seed_base, a.search_per_class, steps=a.reference_steps)
    ref = ref.astype(np.float64) / 255.0
    print(f"reference: dpmpp2m {a.reference_steps} steps, {len(ref)} images on the search seeds "
          f"({time.time() - started:.0f} s)", flush=True)

    for s in a.steps:
        cache, log = {}, []

        def objective(ts, orders):
            key = (tuple(ts), tuple(orders))
            if key not in cache:
                path = os.path.join(scratch, "candidate.json")
                write_schedule(path, ts, orders, t)
                u8, _ = sample(a, os.path.join(scratch, "candidate.u8"), a.search_seed_base, a.search_per_class,
                               schedule=path)
                cache[key] = float(np.mean((u8.astype(np.float64) / 255.0 - ref) ** 2))
                log.append({"timesteps": list(ts), "orders": list(orders), "mse": cache[key]})
            return cache[key]

        t0 = time.time()
        starts = {"uniform": uniform_timesteps(t, s), "quadratic": quadratic_timesteps(t, s),
                  "log_snr": log_snr_timesteps(t, s, lam)}
        scored = {name: objective(ts, default_orders(s)) for name, ts in starts.items() if ts and valid(ts, default_orders(s), t)}
        start_name = min(scored, key=scored.get)
        ts, orders = list(starts[start_name]), default_orders(s)
        best = scored[start_name]
        baseline = scored["uniform"]
        print(f"{s} steps: starts {', '.join(f'{k} {v:.5f}' for k, v in scored.items())}; from {start_name}",
              flush=True)
        for r in range(a.rounds):
            frac = 0.4 / (2 ** r)
            for i in range(s):
                for sign in (-1, 1):
                    upper = t - 1 if i == 0 else ts[i - 1] - 1
                    lower = 0 if i == s - 1 else ts[i + 1] + 1
                    gap = (upper - lower) if i in (0, s - 1) else min(ts[i - 1] - ts[i], ts[i] - ts[i + 1])
                    d = max(1, int(round(frac * max(gap, 1))))
                    v = min(upper, max(lower, ts[i] + sign * d))
                    if v == ts[i]:
                        continue
                    cand = ts[:i] + [v] + ts[i + 1:]
                    if valid(cand, orders, t):
                        m = objective(cand, orders)
                        if m < best:
                            ts, best = cand, m
                            break
            for i in range(1, s - 1):
                cand = orders[:i] + [3 - orders[i]] + orders[i + 1:]
                m = objective(ts, cand)
                if m < best:
                    orders, best = cand, m
            print(f"  round {r + 1}: mse {best:.5f} (uniform {baseline:.5f}) timesteps {ts} orders {orders}",
                  flush=True)
        elapsed = time.time() - t0
        metadata = {
            "model": os.path.basename(os.path.normpath(a.model)),
            "found_by": "tools/dit_schedule/search.py: coordinate descent over timesteps and per-step orders",
            "objective": (f"mean squared pixel error (pixels/255) against dpmpp2m at {a.reference_steps} steps, "
                          f"guidance {a.guidance}, on {len(ref)} images of search seeds "
                          f"{a.search_seed_base} + 100 c + j (j < {a.search_per_class}), disjoint from the "
                          "reporting seeds"),
            "start": start_name, "rounds": a.rounds, "candidates": len(cache), "search_seconds": round(elapsed),
            "mse": best, "mse_uniform_dpmpp2m": baseline}
        write_schedule(os.path.join(a.out_dir, f"schedule-{s}.json"), ts, orders, t, metadata)
        with open(os.path.join(a.out_dir, f"search-{s}.json"), "w") as f:
            json.dump({"steps": s, "candidates": log, "best": {"timesteps": ts, "orders": orders, "mse": best}}, f,
                      indent=1)
        print(f"{s} steps: {len(cache)} candidates in {elapsed:.0f} s; mse {best:.5f} vs uniform "
              f"dpmpp2m {baseline:.5f}", flush=True)


# --- report ---

def report(a):
    scorer = Scorer(a.classifier)
    labels = np.repeat(np.arange(10), a.per_class)
    os.makedirs(a.out_dir, exist_ok=True)
    rows = []
    for s in a.steps:
        variants = [("dpmpp2m", None)] if a.rows != "searched" else []
        path = os.path.join(a.schedules, f"schedule-{s}.json") if a.schedules else ""
        if a.rows != "dpmpp2m" and path and os.path.exists(path):
            variants.append(("searched", path))
        for name, schedule in variants:
            u8, info = sample(a, os.path.join(a.out_dir, f"report-{name}-{s}.u8"), REPORT_SEED_BASE, a.per_class,
                              schedule=schedule, steps=s)
            row = {"steps": s, "schedule": name, "images": int(len(u8)), **scorer(u8, labels),
                   "images_per_second": info["images_per_second"]}
            if schedule:
                row["timesteps"], row["orders"], _ = read_schedule(schedule)
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(os.path.join(a.out_dir, "report.json"), "w") as f:
        json.dump({"guidance": a.guidance, "per_class": a.per_class, "seeds": "100000 + 100 c + j", "rows": rows},
                  f, indent=1)
    print("| steps | schedule | class accuracy | FD | images/s |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['steps']} | {r['schedule']} | {100 * r['class_accuracy']:.1f} % | {r['fd']:.3f} | "
              f"{r['images_per_second']:.2f} |")


def main():
    a = parse_args()
    t, _ = log_snr_table(a.model)
    if t != T:
        print(f"note: the model has {t} training timesteps")
    (search if a.mode == "search" else report)(a)


if __name__ == "__main__":
    main()
