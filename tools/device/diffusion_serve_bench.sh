#!/usr/bin/env bash
# On the GPU machine: diffusion serving through ternd, driven by tern-load.
#   1. images/s of a DiT-XL/2-shaped latent model (random weights, bf16, its VAE
#      decoder on the GPU): one request at a time against 16 in flight, mixed
#      step counts (step-level continuous batching);
#   2. one GPU, two engines: a Llama (1.1B shape) beside the DiT, LLM traffic
#      alone, then LLM + image traffic at device shares 1:1 and 4:1 (LLM:DiT):
#      the LLM's TPOT and the images' latency, with the device-time split from
#      /metrics.
# Run from the repository root with a bundle holding ternd, tern-load and
# tern-mkmodel. Writes JSON reports to $OUT (default /tmp).
#   tools/device/diffusion_serve_bench.sh [--dit-only] [PRESET | MODEL_DIR]
# PRESET is a tern-mkmodel DiT preset (default dit-xl-2-256); a directory
# serves that model instead (models/tern-demo-dit: the trained demo DiT).
# --dit-only skips part 2. SERIAL_REQUESTS and CONCURRENT_REQUESTS (default
# 8 and 64) set part 1's request counts: a small model finishes 64 images in
# a tenth of a second, too short for a steady rate.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=${OUT:-/tmp}
dit_only_run=0
if [[ ${1:-} == --dit-only ]]; then
  dit_only_run=1
  shift
fi
preset=${1:-dit-xl-2-256}
serial_requests=${SERIAL_REQUESTS:-8}
concurrent_requests=${CONCURRENT_REQUESTS:-64}
models=/tmp/tern-models
llm="$models/llama-1b-serve"
mkdir -p "$models" "$out"
if [[ -d $preset ]]; then
  dit=$(cd "$preset" && pwd)
else
  dit="$models/dit-serve-$preset"
  "$bundle/run.sh" bin/tern-mkmodel --arch dit --preset "$preset" --seed 7 --dtype bfloat16 --out "$dit" >/dev/null ||
    { echo "tern-mkmodel --arch dit failed"; exit 1; }
fi

ternd_pid=""
start_ternd() {  # start_ternd CONFIG_JSON
  rm -f /tmp/ports.json
  "$bundle/run.sh" bin/ternd --config "$1" --host 127.0.0.1 --grpc-port 0 --http-port 0 \
    --ports-file /tmp/ports.json >/tmp/ternd.log 2>&1 &
  ternd_pid=$!
  for _ in $(seq 1800); do [[ -f /tmp/ports.json ]] && break; sleep 0.1; done
  [[ -f /tmp/ports.json ]] || { echo "ternd did not start:"; tail -20 /tmp/ternd.log; exit 1; }
  grpc=$(python3 -c 'import json; print(json.load(open("/tmp/ports.json"))["grpc_port"])')
  http=$(python3 -c 'import json; print(json.load(open("/tmp/ports.json"))["http_port"])')
}
stop_ternd() {
  kill -TERM "$ternd_pid" 2>/dev/null
  wait "$ternd_pid" 2>/dev/null
}
load() {  # load NAME ARGS...: tern-load with its table (first 30 lines) and JSON report
  local name=$1
  shift
  echo "== $name"
  "$bundle/run.sh" bin/tern-load --target 127.0.0.1:$grpc --seed 1 --json "$out/$name.json" "$@" 2>&1 | sed -n '1,40p'
}
device_split() {
  curl -s 127.0.0.1:$http/metrics | grep -E '^tern_device_(busy|wait)_seconds_total'
}

dit_only=$(mktemp --suffix .json)
cat >"$dit_only" <<EOF
{"models": [{"name": "dit", "path": "$dit", "backend": "cuda", "dtype": "bfloat16",
             "diffusion": {"max_batch_rows": 32}}]}
EOF
start_ternd "$dit_only"
# Warm-up: the first image of a process pays lazy module loading.
load dit-warmup --image-model dit --image-share 1 --concurrency 1 --requests 2 --image-steps 4
load dit-serial --image-model dit --image-share 1 --concurrency 1 --requests "$serial_requests" --image-steps 10:30
load dit-concurrent16 --image-model dit --image-share 1 --concurrency 16 --requests "$concurrent_requests" \
  --image-steps 10:30
stop_ternd
python3 - "$out/dit-serial.json" "$out/dit-concurrent16.json" <<'PY'
import json, sys
serial, batched = (json.load(open(p)) for p in sys.argv[1:3])
s, b = serial["images"]["images_per_s"], batched["images"]["images_per_s"]
print(f"images/s: serial {s:.3f}, 16 in flight {b:.3f}: {b / s:.2f}x")
for name, j in (("serial", serial), ("16 in flight", batched)):
    e2e = j["images"]["requests"]["latency_ms"]["e2e"]
    print(f"  {name}: e2e p50 {e2e['p50']:.0f} ms, p99 {e2e['p99']:.0f} ms")
PY
(( dit_only_run )) && exit 0

"$bundle/run.sh" bin/tern-mkmodel --arch llama --preset 1b --seed 4 --dtype bfloat16 \
  --tokenizer "$root/tests/data/tokenizers/llama2" --out "$llm" >/dev/null || { echo "tern-mkmodel llama failed"; exit 1; }
for share in 1 4; do
  both=$(mktemp --suffix .json)
  cat >"$both" <<EOF
{"models": [{"name": "llm", "path": "$llm", "backend": "cuda", "device_share": $share},
            {"name": "dit", "path": "$dit", "backend": "cuda", "dtype": "bfloat16", "device_share": 1,
             "diffusion": {"max_batch_rows": 16}}]}
EOF
  start_ternd "$both"
  if [[ $share == 1 ]]; then
    load llm-alone --model llm --prompts "$root/loadtest/prompts/vicuna80.csv" --concurrency 16 --duration 20 \
      --max-tokens 128 --ignore-eos
  fi
  load "llm-and-dit-share$share" --model llm --prompts "$root/loadtest/prompts/vicuna80.csv" --concurrency 24 \
    --duration 30 --max-tokens 128 --ignore-eos --image-model dit --image-share 0.33 --image-steps 20
  device_split
  stop_ternd
done
tail -3 /tmp/ternd.log
