#!/usr/bin/env bash
# On the GPU machine: the weight-only kernels alone (tern-quant-bench: the
# decode GEMV, the tensor-core GEMM and dequantize + cuBLAS beside the dense
# path and the byte floor, fp16 with a slice sweep, then bf16), then
# whole-model speed of random-weight Llama-2-7B in fp16, W4A16 g128, W8A16 and
# W8A8 FP8 / INT8 (tern-mkmodel, then tern-quantize; QUANT_MODELS picks some),
# each on tern's CUDA backend in fp16:
# decode at batch 1, 16 and 64 and a 2048-token prefill, with the speed-up over
# fp16; and the KV cache capacity in tokens that ternd gives each model on
# this GPU (its start-up line), with the time to first token of that
# ternd's first ~2k-token requests (tools/device/first_request.py). Run from
# the repository root with the bundle in .device-bundle/ (tern-quant-bench,
# tern-mkmodel, tern-quantize, tern-run, ternd):
#   tools/device/quant_bench.sh [kernels] [models] [run] [kv]   (default: all four)
# `models` makes the checkpoints (minutes of CPU time; each phase fits one
# 10-minute command), `run` and `kv` use them. JSON lands in $OUT (or /tmp).
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=${OUT:-/tmp}
phases=${*:-kernels models run kv}
dir=/tmp/tern-models
fp16=$dir/llama-2-7b-float16
# QUANT_MODELS picks the checkpoints (default all): float16 and tern-quantize schemes.
names=${QUANT_MODELS:-"float16 w4a16-g128 w8a16 w8a8-fp8 w8a8-int8"}
run_tool() { "$bundle/run.sh" "$@"; }

if [[ " $phases " == *" kernels "* ]]; then
  run_tool bin/tern-quant-bench --sweep-slices --json "$out/quant-kernels.json"
  run_tool bin/tern-quant-bench --dtype bfloat16 --reps 30 --json "$out/quant-kernels-bf16.json"
fi
if [[ " $phases " == *" models "* ]]; then
  # The LLaMA-2 tokenizer (32000 pieces) so that ternd can serve the same checkpoints.
  [[ -f "$fp16/config.json" ]] || run_tool bin/tern-mkmodel --arch llama --preset llama-2-7b \
    --tokenizer "$root/tests/data/tokenizers/llama2" --seed 1 --dtype float16 --out "$fp16" >/dev/null
  for scheme in $names; do
    [[ $scheme == float16 ]] && continue
    [[ -f "$dir/llama-2-7b-$scheme/config.json" ]] || run_tool bin/tern-quantize --model "$fp16" \
      --out "$dir/llama-2-7b-$scheme" --scheme "$scheme"
  done
fi
if [[ " $phases " == *" run "* ]]; then
  for name in $names; do
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
    bench b64 --batch 64 --prompt-tokens 128 --decode-tokens 32
    # Two prompts: the first is cold (lazy module loading), the second the warm rate.
    bench prefill2k --batch 2 --prompt-tokens 2048 --decode-tokens 2
  done
  python3 - "$out" $names <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
def load(name, tag):
    path = os.path.join(out, f"quant-{name}-{tag}.json")
    return json.load(open(path)) if os.path.exists(path) else None
print("== whole model, Llama-2-7B shape, CUDA backend fp16 (tokens/s; x fp16; of the decode floor)")
for tag, key in (("b1", "decode_tokens_per_s"), ("b16", "decode_tokens_per_s"), ("b64", "decode_tokens_per_s"),
                 ("prefill2k", "prefill_warm_tokens_per_s")):
    base = load("float16", tag)
    for name in names:
        j = load(name, tag)
        if j is None:
            continue
        rate = j[key]
        ratio = rate / base[key] if base and base[key] else float("nan")
        floor = j.get("decode_floor_tokens_per_s", 0.0)
        of_floor = f", {rate / floor:.2f} of floor" if tag != "prefill2k" and floor else ""
        print(f"  {tag:10s} {name:12s} {rate:10.1f} tok/s  {ratio:5.2f}x fp16{of_floor}  "
              f"({j['weight_bytes_per_step'] / 1e9:.2f} GB weights per step)")
PY
fi
if [[ " $phases " == *" kv "* ]]; then
  # ternd sizes its KV cache from the memory the weights leave; its start-up line gives both.
  echo "== KV cache capacity (ternd start-up line, CUDA backend)"
  for name in $names; do
    model=$dir/llama-2-7b-$name
    [[ -f "$model/config.json" ]] || { echo "missing $model (run the models phase)"; continue; }
    log=$out/quant-ternd-$name.log
    rm -f /tmp/quant-ports.json
    run_tool bin/ternd --model "$model" --backend cuda --host 127.0.0.1 --grpc-port 0 --http-port 0 \
      --ports-file /tmp/quant-ports.json >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1800); do
      [[ -f /tmp/quant-ports.json ]] && break
      kill -0 $pid 2>/dev/null || break
      sleep 0.1
    done
    line=$(grep -m1 -E "ready: .*kv_cache=" "$log" | sed -E 's/.*(weights=[^)]*\)) kv_cache=([0-9]+) tokens.*/\1 kv_cache=\2 tokens/')
    echo "  $name: ${line:-no start-up line (see $log)}"
    # The first requests of the fresh server: ~2k-token prompts, one token each (TTFT).
    if [[ -f /tmp/quant-ports.json ]]; then
      http=$(python3 -c 'import json; print(json.load(open("/tmp/quant-ports.json"))["http_port"])')
      model_name=$(curl -s "127.0.0.1:$http/v1/models" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')
      python3 "$root/tools/device/first_request.py" --port "$http" --model "$model_name" \
        --json "$out/first-request-$name.json"
    fi
    kill -TERM $pid 2>/dev/null
    wait $pid 2>/dev/null
    # The next server sizes its KV cache from the free memory: wait until this one's is back.
    for _ in $(seq 60); do
      used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
      (( ${used:-0} < 2048 )) && break
      sleep 0.5
    done
  done
fi
