#!/usr/bin/env python3
"""tern-long-context-bench on the CPU backend.

    long_context_bench_test.py TERN_LONG_CONTEXT_BENCH TERN_MKMODEL

1. Bad flags and inputs are refused with exit status 1 and a message that
   names the flag or the file.
2. A dry run on a tiny random model (2 layers, 4 heads, 2 kv heads) with a
   1 MiB cache: the compute-dtype and int8 caches, each dense and with an MoA
   plan; every row runs every submitted sequence at once without preemption,
   int8 fits more sequences than fp32, the plan needs fewer blocks a
   sequence, and the JSON holds each row's figures.
"""
import json
import os
import subprocess
import sys
import tempfile

BENCH, MKMODEL = sys.argv[1], sys.argv[2]
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what)


def run(args):
    return subprocess.run([BENCH] + args, capture_output=True, text=True, timeout=240)


with tempfile.TemporaryDirectory() as tmp:
    model = os.path.join(tmp, "tiny")
    subprocess.run([MKMODEL, "--arch", "llama", "--preset", "tiny", "--vocab-size", "512", "--seed", "1",
                    "--dtype", "float32", "--max-position-embeddings", "1024", "--out", model],
                   check=True, capture_output=True)
    with open(os.path.join(model, "config.json")) as f:
        check(json.load(f)["max_position_embeddings"] == 1024, "tern-mkmodel --max-position-embeddings")
    plan = os.path.join(tmp, "plan.json")
    with open(plan, "w") as f:
        json.dump({"format": "tern.moa.v1", "num_layers": 2, "num_heads": 4, "sinks": 16,
                   "buckets": [{"alphas": [[32, 48, 40, 32], [32, 64, 32, 40]],
                                "betas": [[0, 0, 0.125, 0], [0, 0, 0, 0.0625]]}]}, f)
    wrong_plan = os.path.join(tmp, "wrong.json")
    with open(wrong_plan, "w") as f:
        json.dump({"alphas": [[0.0] * 4] * 3, "betas": [[0.5] * 4] * 3}, f)

    base = ["--model", model, "--backend", "cpu"]
    bad = [
        ([], "--model is required"),
        (base + ["--backend", "tpu"], "--backend"),
        (base + ["--kv-cache-mib", "0"], "--kv-cache-mib"),
        (base + ["--contexts", "256,abc"], "--contexts"),
        (base + ["--contexts", "4096"], "max_position_embeddings"),
        (base + ["--kv-cache-dtypes", "fp4"], "--kv-cache-dtypes"),
        (base + ["--decode-steps", "0"], "--decode-steps"),
        (base + ["--max-num-batched-tokens", "0"], "--max-num-batched-tokens"),
        (base + ["--contexts", "512", "--moa-plan", os.path.join(tmp, "missing.json")], "missing.json"),
        (base + ["--contexts", "512", "--moa-plan", wrong_plan], "wrong.json"),
        (base + ["--no-such-flag"], "no_such_flag"),
        (base + ["extra"], "unexpected argument"),
        (base + ["--kv-cache-mib", "1", "--contexts", "192", "--decode-steps", "500"], "leaves no prompt"),
    ]
    for args, expect in bad:
        result = run(args)
        check(result.returncode == 1 and expect in result.stderr,
              "%s: exit %d, stderr %r (expected %r)" % (args, result.returncode, result.stderr.strip(), expect))

    out = os.path.join(tmp, "rows.json")
    result = run(base + ["--kv-cache-mib", "1", "--contexts", "512,768", "--kv-cache-dtypes", "auto,int8",
                         "--moa-plan", plan, "--decode-steps", "8", "--max-num-batched-tokens", "256",
                         "--json", out])
    print(result.stdout)
    check(result.returncode == 0, "dry run: exit %d, %s" % (result.returncode, result.stderr.strip()))
    if result.returncode == 0:
        with open(out) as f:
            report = json.load(f)
        rows = {(r["context"], r["kv_cache_dtype"], r["attention"]): r for r in report["rows"]}
        check(len(rows) == 8, "8 rows, got %d" % len(rows))
        for key, r in rows.items():
            check(r["sequences_running_max"] == r["sequences_submitted"] > 0, "%s: all at once" % (key,))
            check(r["preemptions"] == 0, "%s: no preemption" % (key,))
            check(r["kv_blocks_held_max"] <= r["kv_blocks_total"], "%s: blocks held within the cache" % (key,))
            check(r["sequences_submitted"] * r["blocks_per_sequence"] <= r["kv_blocks_total"],
                  "%s: every sequence's peak fits" % (key,))
            check(r["decode_tokens_per_s"] > 0 and r["window_tokens"] >= 8 * r["sequences_submitted"],
                  "%s: a steady window of at least --decode-steps steps" % (key,))
            check(r["prompt_tokens"] + r["max_tokens"] == key[0], "%s: prompt + output = context" % (key,))
            check(r["decode_floor_tokens_per_s"] > 0, "%s: a floor" % (key,))
        for context in (512, 768):
            dense, int8 = rows[(context, "auto", "dense")], rows[(context, "int8", "dense")]
            moa = rows[(context, "auto", "moa")]
            check(dense["vs_dense"] == 1.0, "%d: the dense row is its own baseline" % context)
            check(int8["sequences_submitted"] > 2 * dense["sequences_submitted"],
                  "%d: int8 fits more than twice fp32's sequences" % context)
            # With KV-cache groups an MoA row's block holds one group's layers:
            # compare the bytes a sequence holds, not its block count.
            check(moa["blocks_per_sequence"] * moa["kv_block_bytes"]
                  < dense["blocks_per_sequence"] * dense["kv_block_bytes"],
                  "%d: the plan frees KV memory" % context)
            check(moa["kv_bytes_read_per_step"] / moa["sequences_submitted"]
                  < dense["kv_bytes_read_per_step"] / dense["sequences_submitted"],
                  "%d: the plan reads fewer KV bytes a sequence" % context)
            check(0 < moa["moa_density"] < 1, "%d: the plan's density" % context)

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("all checks passed")
