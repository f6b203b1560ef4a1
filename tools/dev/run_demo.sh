#!/usr/bin/env bash
# Starts ternd in the foreground serving the demo model: on the GPU when the
# build has CUDA and a GPU is visible, else on the CPU.
#   tools/dev/run_demo.sh BUILD_DIR GRPC_PORT HTTP_PORT
set -euo pipefail
build=${1:-build}
grpc_port=${2:-50051}
http_port=${3:-8000}
root=$(cd "$(dirname "$0")/../.." && pwd)

# Until a trained demo model ships in models/, serve a tiny generated Llama
# with the real LLaMA-2 tokenizer (regenerated only when missing).
model="$root/$build/models/tiny-llama"
if [[ ! -f "$model/config.json" ]]; then
  "$root/$build/bin/tern-mkmodel" --arch llama --preset tiny --seed 0 --dtype float32 \
    --tokenizer "$root/tests/data/tokenizers/llama2" --out "$model"
fi

echo "ternd: gRPC on :$grpc_port, HTTP on :$http_port (metrics /metrics, health /healthz /readyz)"
echo "try:   $build/bin/tern health    $build/bin/tern models"
# --backend auto: CUDA when this build has it and a GPU is visible, else CPU.
exec "$root/$build/bin/ternd" --model "$model" --backend auto \
  --grpc-port "$grpc_port" --http-port "$http_port"
