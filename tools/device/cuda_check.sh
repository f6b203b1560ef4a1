#!/usr/bin/env bash
# On the GPU machine: the gpu test suite, then tern's CUDA backend against
# Hugging Face transformers (bf16 and fp16) on tiny models of each
# architecture and on a 1B-parameter Llama shape. Run from the repository
# root with the bundle from tools/device/bundle.sh in .device-bundle/.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
models=/tmp/tern-models
mkdir -p "$models"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$bundle/run.sh" ctest -L gpu -j4 --output-on-failure 2>&1 | tail -n 25
for arch in llama qwen2 mixtral; do
  for dtype in bfloat16 float16; do
    "$bundle/run.sh" bin/tern-mkmodel --arch $arch --preset tiny --vocab-size 512 --seed 3 --dtype $dtype \
      --out "$models/tiny-$arch-$dtype" >/dev/null
  done
done
"$bundle/run.sh" bin/tern-mkmodel --arch llama --preset 1b --vocab-size 32000 --seed 3 --dtype bfloat16 \
  --out "$models/llama-1b-bfloat16"
"$bundle/run.sh" bin/tern-mkmodel --arch llama --preset 1b --vocab-size 32000 --seed 3 --dtype float16 \
  --out "$models/llama-1b-float16"
status=0
for dtype in bfloat16 float16; do
  python3 tools/device/compare_hf.py --tern-run "$bundle/run.sh bin/tern-run" --dtype $dtype --steps 32 \
    --json "${OUT:-/tmp}/compare-$dtype.json" \
    "$models/tiny-llama-$dtype" "$models/tiny-qwen2-$dtype" "$models/tiny-mixtral-$dtype" \
    "$models/llama-1b-$dtype" 2>&1 | grep -v -E "Warning|warn|Loading weights" || status=1
done
exit $status
