#!/usr/bin/env bash
# On the GPU machine: Skeleton-of-Thought against normal decoding on a
# random-weight Llama-2-7B (fp16, real LLaMA-2 tokenizer).
#   1. tern-sot-bench: one request at a time, 3/6/10 points of 64 tokens
#      after a 40-token skeleton, against normal decoding of the same answer
#      length, with the floor (skeleton + one point at the batch-N step time).
#   2. ternd under tern-load (when the bundle holds ternd and tern-load):
#      20% of requests SoT (6 points x 64 tokens) at 50% and 80% of the
#      saturated request rate, beside the same requests decoded normally.
# Run from the repository root with a bundle holding tern-sot-bench and
# tern-mkmodel (and ternd, tern-load for part 2).
set -uo pipefail
root=$(pwd)
bundle="${TERN_BUNDLE:-$root/.device-bundle}"
model=/tmp/tern-models/llama-2-7b
out=${OUT:-/tmp}
"$bundle/run.sh" bin/tern-mkmodel --arch llama --preset llama-2-7b --seed 4 --dtype float16 \
  --tokenizer "$root/tests/data/tokenizers/llama2" --out "$model" >/dev/null || exit 1
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
"$bundle/run.sh" bin/tern-sot-bench --model "$model" --backend cuda --dtype float16 --points 3,6,10 \
  --point-tokens 64 --skeleton-tokens 40 --repeats 3 --json "$out/sot-bench.json"
[[ -x "$bundle/bin/ternd" && -x "$bundle/bin/tern-load" ]] || exit 0

rm -f /tmp/ports.json
"$bundle/run.sh" bin/ternd --model "$model" --backend cuda --host 127.0.0.1 --grpc-port 0 \
  --http-port 0 --ports-file /tmp/ports.json >/tmp/ternd.log 2>&1 &
for _ in $(seq 3000); do [[ -f /tmp/ports.json ]] && break; sleep 0.1; done
grpc=$(python3 -c 'import json; print(json.load(open("/tmp/ports.json"))["grpc_port"])')
load() {  # rate, sot-share, extra flags..., json name
  local rate=$1 share=$2 name=$3; shift 3
  "$bundle/run.sh" bin/tern-load --target 127.0.0.1:$grpc --model llama-2-7b \
    --prompts "$root/loadtest/prompts/vicuna80.csv" --rate "$rate" --duration 30 --max-tokens 128 --ignore-eos \
    --seed 1 --sot-share "$share" --sot-outline-points 6 --sot-point-tokens 64 "$@" --json "$out/$name.json" 2>&1 |
    sed -n '1,24p'
}
# Saturation: offered far above capacity; the completed rate is what it holds.
load 200 0.2 saturate
sat=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["request_throughput"])' \
  "$out/saturate.json")
echo "saturated at $sat req/s"
for frac in 0.5 0.8; do
  rate=$(python3 -c "print(round($sat * $frac, 2))")
  load "$rate" 0.2 "sot-$frac"
  load "$rate" 0.2 "normal-$frac" --sot-as-normal
done
kill -TERM %1; wait
tail -3 /tmp/ternd.log
