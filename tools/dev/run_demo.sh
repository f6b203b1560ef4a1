#!/usr/bin/env bash
# Starts ternd in the foreground serving the demo models: the LLM on the GPU
# when the build has CUDA and a GPU is visible, else on the CPU, and beside it
# the demo DiT (class-conditional 32x32 images, on the CPU).
#   tools/dev/run_demo.sh BUILD_DIR GRPC_PORT HTTP_PORT
set -euo pipefail
build=${1:-build}
grpc_port=${2:-50051}
http_port=${3:-8000}
root=$(cd "$(dirname "$0")/../.." && pwd)

# The demo models tern trains itself (models/tern-demo-llm and models/tern-demo-dit, see their cards).
model="$root/models/tern-demo-llm"
dit="$root/models/tern-demo-dit"

echo "ternd: gRPC on :$grpc_port, HTTP on :$http_port (metrics /metrics, health /healthz /readyz)"
echo "try:   $build/bin/tern generate -m tern-demo-llm \"The history of\""
echo "       $build/bin/tern generate -m tern-demo-llm --mode sot \"How do I make good coffee?\""
echo "       $build/bin/tern image -m tern-demo-dit --class Sneaker -o sneaker.png"
echo "       curl -s localhost:$http_port/v1/chat/completions -d '{\"model\": \"tern-demo-llm\", \"max_tokens\": 32, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'"
# --backend auto: CUDA when this build has it and a GPU is visible, else CPU.
# The trained SoT-R router (models/sot-router) decides DECODING_MODE_AUTO requests.
exec "$root/$build/bin/ternd" --model "$model" --model "$dit" --backend auto \
  --sot-router-file "$root/models/sot-router/router.json" \
  --grpc-port "$grpc_port" --http-port "$http_port"
