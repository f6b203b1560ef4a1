#!/usr/bin/env bash
# On the GPU machine: the gpu test suite, then tern's CUDA backend against
# Hugging Face transformers (bf16 and fp16) on tiny models of each
# architecture and on a 1B-parameter Llama shape. fp16 is held to the literal
# bound; bf16, over three prompts, to the accuracy criterion: as close to the
# float32 logits as transformers' own bf16 (compare_hf.py explains both;
# bf16_spread.py measures how far transformers moves by itself). Run from the repository
# root with the bundle from tools/device/bundle.sh in .device-bundle/.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
models=/tmp/tern-models
mkdir -p "$models"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
status=0
"$bundle/run.sh" ctest -L gpu -j4 --output-on-failure 2>&1 | tail -n 25
[[ ${PIPESTATUS[0]} == 0 ]] || status=1
for arch in llama qwen2 mixtral; do
  for dtype in bfloat16 float16; do
    "$bundle/run.sh" bin/tern-mkmodel --arch $arch --preset tiny --vocab-size 512 --seed 3 --dtype $dtype \
      --out "$models/tiny-$arch-$dtype" >/dev/null
  done
done
"$bundle/run.sh" bin/tern-mkmodel --arch llama --preset 1b --vocab-size 32000 --seed 3 --dtype bfloat16 \
  --out "$models/llama-1b-bfloat16" >/dev/null
"$bundle/run.sh" bin/tern-mkmodel --arch llama --preset 1b --vocab-size 32000 --seed 3 --dtype float16 \
  --out "$models/llama-1b-float16" >/dev/null
models_of() {
  echo "$models/tiny-llama-$1" "$models/tiny-qwen2-$1" "$models/tiny-mixtral-$1" "$models/llama-1b-$1"
}
quiet() { grep -v -E "Warning|warn|Loading weights|generation flags|scaled_dot_product_attention"; }
# shellcheck disable=SC2046
python3 tools/device/compare_hf.py --tern-run "$bundle/run.sh bin/tern-run" --dtype bfloat16 --steps 32 \
  --prompts 3 --accept-accuracy --json "${OUT:-/tmp}/compare-bfloat16.json" $(models_of bfloat16) 2>&1 | quiet
[[ ${PIPESTATUS[0]} == 0 ]] || status=1
# shellcheck disable=SC2046
python3 tools/device/compare_hf.py --tern-run "$bundle/run.sh bin/tern-run" --dtype float16 --steps 32 \
  --json "${OUT:-/tmp}/compare-float16.json" $(models_of float16) 2>&1 | quiet
[[ ${PIPESTATUS[0]} == 0 ]] || status=1
if [[ "${TERN_CHECK_SPREAD:-0}" == 1 ]]; then
  # shellcheck disable=SC2046
  python3 tools/device/bf16_spread.py --dtype bfloat16 --steps 32 --json "${OUT:-/tmp}/spread-bfloat16.json" \
    $(models_of bfloat16) 2>&1 | quiet
fi
exit $status
