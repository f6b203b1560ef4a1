#!/usr/bin/env bash
# On the GPU machine: decode of a Mixtral-8x7B-shaped mixture of experts
# (hidden 4096, 14,336-wide experts, 8 experts top 2, GQA 32/8, the LLaMA-2
# vocabulary; MOE_LAYERS of its 32 layers, 8 by default, to fit memory and
# the command's time), random bf16 weights from tern-mkmodel, on tern's
# CUDA backend in bf16: batch 1, 16 and 64, each with the experts' row offsets
# read on the device (the expert GEMM, CUDA graphs) and read back to the host
# (`--moe-device-experts=false`: the grouped cuBLAS GEMM every step, no
# graphs), against the byte floor of the experts a step is expected to read.
# The moe_expert_gemm_cuda_test and the CUDA MoE model tests first. Run from
# the repository root with the bundle in .device-bundle/:
#   tools/device/moe_bench.sh        JSON lands in $OUT (or /tmp).
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=${OUT:-/tmp}
layers=${MOE_LAYERS:-8}
model=/tmp/tern-models/mixtral-8x7b-shape-${layers}l
run_tool() { "$bundle/run.sh" "$@"; }

run_tool tests/moe_expert_gemm_cuda_test --gtest_brief=1 2>&1 | tail -3
run_tool tests/llama_model_cuda_test --gtest_brief=1 --gtest_filter='*Moe*:*CudaGraph*:*mixtral*' 2>&1 | tail -3
# The Llama-3-8B preset has Mixtral-8x7B's hidden, intermediate and head
# shapes; the arch makes each MLP 8 experts.
[[ -f "$model/config.json" ]] || run_tool bin/tern-mkmodel --arch mixtral --preset llama-3-8b --layers "$layers" \
  --vocab-size 32000 --seed 1 --dtype bfloat16 --out "$model" >/dev/null
for batch in 1 16 64; do
  for device in true false; do
    echo "== batch $batch, experts' offsets on the device: $device"
    run_tool bin/tern-run --model "$model" --backend cuda --dtype bfloat16 --bench --batch "$batch" \
      --prompt-tokens 128 --decode-tokens 64 --moe-device-experts="$device" \
      --json "$out/moe-b$batch-device-$device.json" | grep -E "decode|experts|bandwidth"
  done
done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
print("| batch | device offsets tok/s | host offsets tok/s | speed-up | floor tok/s (expected experts) | of floor |")
print("| --- | --- | --- | --- | --- | --- |")
for batch in (1, 16, 64):
    rows = {}
    for device in ("true", "false"):
        path = os.path.join(out, f"moe-b{batch}-device-{device}.json")
        if os.path.exists(path):
            rows[device] = json.load(open(path))
    if len(rows) < 2:
        continue
    d, h = rows["true"], rows["false"]
    print(f"| {batch} | {d['decode_tokens_per_s']:.1f} | {h['decode_tokens_per_s']:.1f} | "
          f"{d['decode_tokens_per_s'] / h['decode_tokens_per_s']:.2f}x | {d['decode_floor_tokens_per_s']:.1f} "
          f"({d['moe_expected_active_experts']:.2f} of 8) | {d['decode_tokens_per_s'] / d['decode_floor_tokens_per_s']:.2f} |")
PY
