#!/usr/bin/env bash
# On the GPU machine: the weight-only kernels alone (tern-quant-bench), then
# whole-model speed of random-weight Llama-2-7B in fp16, W4A16 g128 and W8A16
# (tern-mkmodel, then tern-quantize), each on tern's CUDA backend in fp16:
# decode at batch 1 and 16, and a 2048-token prefill. Run from the
# repository root with the bundle in .device-bundle/:
#   tools/device/quant_bench.sh [kernels] [models] [run]   (default: all three)
# `models` makes the checkpoints (minutes of CPU time; each phase fits one
# 10-minute command), `run` times them. JSON lands in $OUT (or /tmp).
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=${OUT:-/tmp}
phases=${*:-kernels models run}
dir=/tmp/tern-models
fp16=$dir/llama-2-7b-float16
run_tool() { "$bundle/run.sh" "$@"; }

if [[ " $phases " == *" kernels "* ]]; then
  run_tool bin/tern-quant-bench --json "$out/quant-kernels.json"
fi
if [[ " $phases " == *" models "* ]]; then
  [[ -f "$fp16/config.json" ]] || run_tool bin/tern-mkmodel --arch llama --preset llama-2-7b --vocab-size 32000 \
    --seed 1 --dtype float16 --out "$fp16" >/dev/null
  for scheme in w4a16-g128 w8a16; do
    [[ -f "$dir/llama-2-7b-$scheme/config.json" ]] || run_tool bin/tern-quantize --model "$fp16" \
      --out "$dir/llama-2-7b-$scheme" --scheme "$scheme"
  done
fi
if [[ " $phases " == *" run "* ]]; then
  for name in float16 w4a16-g128 w8a16; do
    model=$dir/llama-2-7b-$name
    [[ -f "$model/config.json" ]] || { echo "missing $model (run the models phase)"; continue; }
    bench() {  # json-name args...
      local tag=$1
      shift
      echo "== $name $tag: $*"
      run_tool bin/tern-run --model "$model" --backend cuda --dtype float16 --bench --json "$out/quant-$name-$tag.json" \
        "$@" | grep -E "prefill|decode|weight|scheme"
    }
    bench b1 --batch 1 --prompt-tokens 128 --decode-tokens 64
    bench b16 --batch 16 --prompt-tokens 128 --decode-tokens 64
    # Two prompts: the first is cold (lazy module loading), the second the warm rate.
    bench prefill2k --batch 2 --prompt-tokens 2048 --decode-tokens 2
  done
fi
