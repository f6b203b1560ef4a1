#!/usr/bin/env bash
# W8A8 for the DiT on the GPU (runtime/dit/dit_linear_plan.h): correctness,
# image quality and step time, bf16 against w8a8-fp8, w8a8-int8 and w8a8 with
# the sensitivity plan.
#
#   1. the GPU tests: cuda_dit_w8a8_test (W8A8 linears and the demo DiT's
#      forward against the CPU ops of the same scheme, graphs, batch
#      invariance) and cuda_dit_ops_test (dense, unchanged);
#   2. the sensitivity plan of the demo DiT (tern-dit-sensitivity on the CPU
#      ops: each layer alone quantized, relative MSE of eps on DDIM
#      trajectories; the 4 worst kept dense), unless --plan names one;
#   3. quality: tools/device/dit_quality.sh in bf16 with weight schemes
#      auto, w8a8-fp8, w8a8-int8 and mixed:PLAN (default 100 images a class:
#      class accuracy and Frechet distance by score_dit_images.py /
#      frechet.py, beside eval.json's PyTorch row);
#   4. speed: tern-dit-bench (DiT-XL/2 shape, random weights) at 256 and
#      1024 tokens, batches 1, 8 and 64, bf16 dense, w8a8-fp8 (also with
#      cuBLASLt's fast accumulation, and with each layer quantizing its own
#      input) and w8a8-int8, in one run on one card.
#
#   tools/device/dit_w8a8.sh [--per-class 100] [--plan FILE] [--skip-tests]
#                            [--skip-quality] [--skip-bench]
#
# From the repository root with a bundle holding ternd, tern, tern-dit-bench,
# tern-dit-sensitivity and the tests (.device-bundle/run.sh). Needs python3
# with numpy for the quality step. Writes $OUT (default /tmp/dit-w8a8):
# tests.log, sensitivity.txt, sensitivity.json, plan.json, quality/ (as
# dit_quality.sh), bench-SCHEME.json and bench.txt.
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/dit-w8a8}
per_class=100
plan=""
run_tests=1 run_quality=1 run_bench=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --per-class) per_class=$2; shift 2 ;;
    --plan) plan=$2; shift 2 ;;
    --skip-tests) run_tests=0; shift ;;
    --skip-quality) run_quality=0; shift ;;
    --skip-bench) run_bench=0; shift ;;
    *) echo "dit_w8a8.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bundle="$root/.device-bundle/run.sh"
mkdir -p "$out"
status=0

if ((run_tests)); then
  echo "== GPU tests (cuda_dit_w8a8_test, cuda_dit_ops_test)"
  "$bundle" ctest -R 'CudaDitW8A8Test|CudaDitOps|CudaDitModel|CudaLatentDit' --output-on-failure >"$out/tests.log" 2>&1 ||
    status=1
  tail -4 "$out/tests.log"
  "$bundle" tests/cuda_dit_w8a8_test >"$out/w8a8-test-output.txt" 2>&1 || status=1
  grep -E 'error|eps vs' "$out/w8a8-test-output.txt" | head -60
fi

if [[ -z $plan ]]; then
  echo "== sensitivity of the demo DiT's layers (CPU ops, w8a8-int8)"
  plan="$out/plan.json"
  "$bundle" bin/tern-dit-sensitivity --model "$root/models/tern-demo-dit" --scheme w8a8-int8 --keep-dense 4 \
    --plan-out "$plan" --json-out "$out/sensitivity.json" >"$out/sensitivity.txt" 2>"$out/sensitivity.log" || {
    echo "tern-dit-sensitivity failed:"; tail -5 "$out/sensitivity.log"; exit 1; }
  head -8 "$out/sensitivity.txt"
  tail -2 "$out/sensitivity.txt"
fi

if ((run_quality)); then
  echo "== quality: bf16 dense and W8A8 through ternd"
  OUT="$out/quality" "$root/tools/device/dit_quality.sh" --backend cuda --dtypes bfloat16 \
    --weight-schemes "auto,w8a8-fp8,w8a8-int8,mixed:$plan" --per-class "$per_class" || status=1
fi

if ((run_bench)); then
  echo "== DiT-XL/2 step, bf16: dense, w8a8-fp8, w8a8-int8"
  : >"$out/bench.txt"
  for scheme in auto w8a8-fp8 w8a8-int8; do
    "$bundle" bin/tern-dit-bench --dtype bfloat16 --weight-scheme "$scheme" --tokens 256,1024 --batches 1,8,64 \
      --json "$out/bench-$scheme.json" | tee -a "$out/bench.txt" || status=1
  done
  # FP8 with cuBLASLt's fast accumulation: what the fp32 promotion every 128 inputs costs.
  "$bundle" bin/tern-dit-bench --dtype bfloat16 --weight-scheme w8a8-fp8 --fp8-fast-accum 1 --tokens 256,1024 \
    --batches 1,8,64 --json "$out/bench-w8a8-fp8-fast.json" | tee -a "$out/bench.txt" || status=1
  # FP8 with each layer quantizing its own input: what the quantizing LayerNorm saves.
  "$bundle" bin/tern-dit-bench --dtype bfloat16 --weight-scheme w8a8-fp8 --fuse-activation-quant 0 --tokens 256,1024 \
    --batches 1,8,64 --json "$out/bench-w8a8-fp8-unfused.json" | tee -a "$out/bench.txt" || status=1
  python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
schemes = ("w8a8-fp8", "w8a8-fp8-fast", "w8a8-fp8-unfused", "w8a8-int8")
runs = {s: json.load(open(f"{out}/bench-{s}.json")) for s in ("auto",) + schemes}
print(f"{runs['auto']['device']}: DiT-XL/2 step, graphs, ms (speedup over bf16); -fast: fp8 fast accumulation; "
      "-unfused: each layer quantizes its own input")
print(f"{'tokens':>6} {'batch':>5} | {'bf16':>8} | " + " | ".join(f"{s:>16}" for s in schemes))
for i, r in enumerate(runs["auto"]["results"]):
    base = r["step_ms_graphs"]
    cells = []
    for s in schemes:
        ms = runs[s]["results"][i]["step_ms_graphs"]
        cells.append(f"{ms:8.3f} ({base / ms:4.2f}x)")
    print(f"{r['tokens']:>6} {r['batch_rows']:>5} | {base:8.3f} | " + " | ".join(f"{c:>16}" for c in cells))
PY
fi
exit $status
