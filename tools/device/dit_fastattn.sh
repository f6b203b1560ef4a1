#!/usr/bin/env bash
# DiTFastAttn on the GPU (runtime/dit/dit_attention_plan.h, dit_fast_attention.h):
# correctness, plans searched for the demo DiT, their image quality through
# ternd, and generation time at DiT-XL/2 shape.
#
#   1. the GPU tests: cuda_dit_fast_attention_test (window attention, cache
#      copies and the demo DiT under a plan against the CPU ops, batch
#      invariance, graphs beside plan passes) and cuda_dit_ops_test (the
#      attention kernel's unbanded path, unchanged);
#   2. plans for the demo DiT (tools/dit_fastattn/search_plan.py, PyTorch on
#      the GPU: the paper's greedy rule at each threshold; dpmpp2m, 20 steps,
#      guidance 3, window 32 of 256 tokens), each checked against
#      tern-dit-sample under the same plan (pixels within a level or two),
#      unless --plans names files;
#   3. quality: tools/device/dit_quality.sh in bf16, exact and with each plan
#      (class accuracy and Frechet distance, 100 images a class by default);
#      the gate for a default plan: accuracy within 2 points of exact, FD up
#      by less than 10 %;
#   4. speed: tern-dit-bench --attention-plan (DiT-XL/2 shape, random
#      weights, bf16) at 256 and 1024 tokens, 1, 8 and 64 guided images
#      (2, 16, 128 forward rows): a whole 20-step DDIM generation with exact
#      attention (CUDA graphs, and eager) and under synthetic plans with
#      FRACTION of the (step, block) entries compressed (half reuse, half
#      window of tokens / 8 each side; ":cfg" also shares the guidance halves).
#
#   tools/device/dit_fastattn.sh [--thresholds 0.025,0.05,0.1,0.2] [--plans a.json,b.json]
#                                [--synthetic synthetic:20:0.6,synthetic:20:0.8:cfg]
#                                [--per-class 100] [--skip-tests] [--skip-quality] [--skip-bench]
#
# From the repository root with a bundle holding ternd, tern, tern-dit-bench
# and the tests (.device-bundle/run.sh). Needs python3 with torch (search)
# and numpy (quality). Writes $OUT (default /tmp/dit-fastattn): tests.log,
# fastattn-test-output.txt, plans/ (plan-T.json, search.json, search.txt),
# quality/ (as dit_quality.sh), bench.json, bench.txt, summary.txt.
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/dit-fastattn}
thresholds=0.025,0.05,0.1,0.2
plans=""
synthetic=synthetic:20:0.6,synthetic:20:0.8:cfg
per_class=100
run_tests=1 run_quality=1 run_bench=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --thresholds) thresholds=$2; shift 2 ;;
    --plans) plans=$2; shift 2 ;;
    --synthetic) synthetic=$2; shift 2 ;;
    --per-class) per_class=$2; shift 2 ;;
    --skip-tests) run_tests=0; shift ;;
    --skip-quality) run_quality=0; shift ;;
    --skip-bench) run_bench=0; shift ;;
    *) echo "dit_fastattn.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bundle="$root/.device-bundle/run.sh"
mkdir -p "$out"
status=0

if ((run_tests)); then
  echo "== GPU tests (cuda_dit_fast_attention_test, cuda_dit_ops_test)"
  "$bundle" ctest -R 'CudaDitFastAttention|CudaDitOps|CudaDitModel' --output-on-failure >"$out/tests.log" 2>&1 ||
    status=1
  tail -4 "$out/tests.log"
  "$bundle" tests/cuda_dit_fast_attention_test >"$out/fastattn-test-output.txt" 2>&1 || status=1
  grep -E 'relative|graphs captured|FAILED|error' "$out/fastattn-test-output.txt" | head -60
fi

if [[ -z $plans ]]; then
  echo "== searching plans for the demo DiT (thresholds $thresholds)"
  mkdir -p "$out/plans"
  python3 "$root/tools/dit_fastattn/search_plan.py" --out-dir "$out/plans" --thresholds "$thresholds" \
    --device cuda --check-bin "$bundle" >"$out/plans/search.txt" 2>&1 || { echo "search_plan.py failed:"; tail -20 "$out/plans/search.txt"; exit 1; }
  cat "$out/plans/search.txt"
  plans=$(ls "$out"/plans/plan-*.json | paste -sd, -)
fi

if ((run_quality)); then
  echo "== quality: bf16 exact and each plan through ternd"
  OUT="$out/quality" "$root/tools/device/dit_quality.sh" --backend cuda --dtypes bfloat16 \
    --attention-plans "$plans" --per-class "$per_class" || status=1
  python3 - "$out/quality" >"$out/summary.txt" <<'PY'
import glob, json, os, sys
rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "quality-*.json"))):
    name = os.path.basename(path)[len("quality-"):-len(".json")]
    q = json.load(open(path))
    rows[name] = (q.get("class_accuracy"), q.get("fd"))
base = rows.get("bfloat16")
print(f"{'variant':40s} {'accuracy':>9s} {'FD':>8s} {'d acc':>7s} {'FD +%':>7s} gate")
for name, (acc, fd) in rows.items():
    if base is None or acc is None or fd is None:
        print(name, acc, fd)
        continue
    dacc, dfd = 100 * (acc - base[0]), 100 * (fd / base[1] - 1)
    gate = "pass" if dacc >= -2.0 and dfd < 10.0 else "FAIL"
    print(f"{name:40s} {100 * acc:8.2f}% {fd:8.3f} {dacc:+7.2f} {dfd:+7.1f} {gate if name != 'bfloat16' else ''}")
PY
  cat "$out/summary.txt"
fi

if ((run_bench)); then
  echo "== speed: DiT-XL/2 shape generations, exact vs plans (bf16)"
  : >"$out/bench.txt"
  for spec in ${synthetic//,/ }; do
    name=$(echo "$spec" | tr ':' '-')
    "$bundle" bin/tern-dit-bench --dtype bfloat16 --tokens 256,1024 --batches 2,16,128 --reps 1 \
      --attention-plan "$spec" --json "$out/bench-$name.json" 2>&1 | tee -a "$out/bench.txt" || status=1
  done
fi
exit $status
