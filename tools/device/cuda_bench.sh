#!/usr/bin/env bash
# On the GPU machine: the two ceilings, then tern's CUDA backend on a
# random-weight Llama-2-7B (fp16) beside Hugging Face transformers on the same
# weights: batch-1 decode, batch-64 decode at 1k context, 2048-token prefill.
# Run from the repository root with the bundle in .device-bundle/.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
model=/tmp/tern-models/llama-2-7b-float16
out=${OUT:-/tmp}
python3 tools/device/ceilings.py
if [[ ! -f "$model/config.json" ]]; then
  "$bundle/run.sh" bin/tern-mkmodel --arch llama --preset llama-2-7b --vocab-size 32000 --seed 1 --dtype float16 \
    --out "$model"
fi
run() { "$bundle/run.sh" bin/tern-run --model "$model" --backend cuda --dtype float16 --bench "$@"; }
run --batch 1 --prompt-tokens 128 --decode-tokens 64 --json "$out/tern-b1.json"
run --batch 64 --prompt-tokens 1024 --decode-tokens 16 --json "$out/tern-b64-1k.json"
run --batch 1 --prompt-tokens 2048 --decode-tokens 2 --json "$out/tern-prefill2k.json"
python3 tools/device/hf_generate_bench.py "$model" --dtype float16 --batch 1 --prompt 128 --new 64 2>&1 | grep -v -i warn
python3 tools/device/hf_generate_bench.py "$model" --dtype float16 --batch 64 --prompt 1024 --new 16 2>&1 | grep -v -i warn
