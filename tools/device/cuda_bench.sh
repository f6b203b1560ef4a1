#!/usr/bin/env bash
# On the GPU machine: the two ceilings, then tern's CUDA backend on random-weight
# Llama-2-7B (fp16; MHA) and Llama-3-8B (fp16; GQA 8, so 256 x 1k and 64 x 4k
# contexts fit) beside Hugging Face transformers on the same weights.
# Run from the repository root with the bundle in .device-bundle/:
#   tools/device/cuda_bench.sh [tern] [hf] [trace]    (default: tern hf; trace: per-kernel step timeline)
# JSON for every run lands in $OUT (or /tmp).
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=${OUT:-/tmp}
phases=${*:-tern hf}
m7=/tmp/tern-models/llama-2-7b-float16
m8=/tmp/tern-models/llama-3-8b-float16
make_model() {  # preset dir
  [[ -f "$2/config.json" ]] || "$bundle/run.sh" bin/tern-mkmodel --arch llama --preset "$1" --vocab-size "$3" \
    --seed 1 --dtype float16 --out "$2" >/dev/null
}
run() {  # model json-name args...
  local model=$1 name=$2
  shift 2
  echo "== tern $name: $*"
  "$bundle/run.sh" bin/tern-run --model "$model" --backend cuda --dtype float16 --bench --json "$out/tern-$name.json" \
    "$@" | grep -E "prefill|decode|copy"
}
python3 tools/device/ceilings.py
make_model llama-2-7b "$m7" 32000
if [[ " $phases " == *" tern "* ]]; then
  run "$m7" b1 --batch 1 --prompt-tokens 128 --decode-tokens 64
  run "$m7" b64-512 --batch 64 --prompt-tokens 512 --decode-tokens 32
  run "$m7" b64-1k --batch 64 --prompt-tokens 1024 --decode-tokens 32
  # Two prompts: the first is cold (lazy module loading), the second the warm rate.
  run "$m7" prefill2k --batch 2 --prompt-tokens 2048 --decode-tokens 2
  make_model llama-3-8b "$m8" 128256
  run "$m8" l3-b64-4k --batch 64 --prompt-tokens 4096 --decode-tokens 16
  run "$m8" l3-b256-1k --batch 256 --prompt-tokens 1024 --decode-tokens 16
fi
if [[ " $phases " == *" hf "* ]]; then
  hf() { python3 tools/device/hf_generate_bench.py "$m7" --dtype bfloat16 "$@" 2>&1 | grep "hf transformers"; }
  hf --batch 1 --prompt 128 --new 64 --cache static --compile --json "$out/hf-b1-compile.json"
  hf --batch 64 --prompt 1024 --new 16 --cache static --json "$out/hf-b64-static.json"
fi
if [[ " $phases " == *" trace "* ]]; then
  # Kernel timeline of batch-1 decode through CUPTI (tools/trace): PyTorch's wheels ship libcupti.
  cupti=${TERN_CUPTI_LIBRARY:-$(python3 -c 'import glob, os, torch; d = os.path.dirname(os.path.dirname(torch.__file__)); print(sorted(glob.glob(d + "/nvidia/**/libcupti.so*", recursive=True))[-1])' 2>/dev/null)}
  echo "CUPTI: ${cupti:-not found}"
  for mode in graphs eager; do
    flags=()
    [[ $mode == eager ]] && flags=(--cuda_graphs=false)
    TERN_CUPTI_LIBRARY=$cupti TERN_KERNEL_TRACE="$out/trace-b1-$mode.csv" TERN_KERNEL_TRACE_PROCESS=tern-run \
      LD_PRELOAD="$bundle/lib/libtern-kernel-trace.so" timeout 120 "$bundle/run.sh" bin/tern-run --model "$m7" --backend cuda \
      --dtype float16 --bench --batch 1 --prompt-tokens 128 --decode-tokens 32 "${flags[@]}" | grep -E "decode"
    echo "== kernel time per batch-1 decode step ($mode)"
    python3 tools/trace/summarize_trace.py "$out/trace-b1-$mode.csv" --steps 16 --json "$out/trace-b1-$mode.json"
    xz -f "$out/trace-b1-$mode.csv"
  done
fi
