#!/usr/bin/env bash
# On the GPU machine: ternd serving a random-weight Llama (1.1B shape, real
# LLaMA-2 tokenizer) on the CUDA backend, driven by tern-load with the
# Vicuna-80 prompts at three open-loop rates (SERVE_RATES). ASYNC=1 serves it
# with asyncScheduling (each decode step planned while the one before runs;
# JSON names end in -async). Run from the repository root with a bundle
# holding ternd, tern, tern-load and tern-mkmodel.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
model=/tmp/tern-models/llama-1b-serve
out=${OUT:-/tmp}
async=${ASYNC:-0}
tag=$([[ $async == 1 ]] && echo -async || echo "")
[[ -f "$model/config.json" ]] || "$bundle/run.sh" bin/tern-mkmodel --arch llama --preset 1b --seed 4 --dtype bfloat16 \
  --tokenizer "$root/tests/data/tokenizers/llama2" --out "$model" >/dev/null
rm -f /tmp/ports.json
started=$(date +%s.%N)
python3 -c 'import json, sys
print(json.dumps({"models": [{"path": sys.argv[1], "backend": "cuda", "asyncScheduling": sys.argv[2] == "1"}]}))' \
  "$model" "$async" > /tmp/serve-config.json
"$bundle/run.sh" bin/ternd --config /tmp/serve-config.json --host 127.0.0.1 --grpc-port 0 --http-port 0 \
  --ports-file /tmp/ports.json >/tmp/ternd.log 2>&1 &
for _ in $(seq 1200); do [[ -f /tmp/ports.json ]] && break; sleep 0.1; done
echo "ternd serving after $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s (weights, KV cache, warm-up)"
grpc=$(python3 -c 'import json; print(json.load(open("/tmp/ports.json"))["grpc_port"])')
http=$(python3 -c 'import json; print(json.load(open("/tmp/ports.json"))["http_port"])')
"$bundle/run.sh" bin/tern --target 127.0.0.1:$grpc models
for rate in ${SERVE_RATES:-4 16 64}; do
  "$bundle/run.sh" bin/tern-load --target 127.0.0.1:$grpc --model llama-1b-serve \
    --prompts "$root/loadtest/prompts/vicuna80.csv" --rate $rate --duration 30 --max-tokens 128 --ignore-eos \
    --seed 1 --json "$out/serve-rate$rate$tag.json" --json-requests 2>&1 | sed -n '1,14p'
  # The first request of the first rate meets a freshly started ternd: its TTFT shows whether start-up warm-up worked.
  python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
first = min(j["requests"], key=lambda r: r["index"])
print("  first request TTFT %.2f ms, max %.2f ms" % (first["ttft_ms"], j["latency_ms"]["ttft"]["max"]))' \
    "$out/serve-rate$rate$tag.json"
done
curl -s 127.0.0.1:$http/metrics | grep -E '^tern_(kv_cache_usage|num_preempt|generation_tokens_total|engine_steps)' | head
kill -TERM %1; wait
tail -3 /tmp/ternd.log
