#!/usr/bin/env bash
# On the GPU machine: the 10-minute GPU soak (tools/soak/soak.py with the demo LLM and the demo DiT
# on the GPU, GPU memory sampled with nvidia-smi) in the background, so that one command need not
# outlast it. Run from the repository root with a bundle that carries ternd, tern and tern-load
# (TERN_BUNDLE_BINARIES="ternd tern tern-load" tools/device/bundle.sh):
#   tools/device/soak_gpu.sh start [SECONDS] [RATE] [CPUS]   starts it (default 600 s, 4 streams/s,
#                                                            CPUs 0-5) and returns
#   tools/device/soak_gpu.sh collect                         waits for its end, prints its table and
#                                                            copies the report, samples and logs to $OUT
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
state=/tmp/tern-soak-gpu
out=${OUT:-/tmp/soak-gpu}

case "${1:-}" in
  start)
    seconds=${2:-600}
    rate=${3:-4}
    cpus=${4:-0-5}
    [[ -d "$bundle/lib" ]] || "$bundle/run.sh" true
    rm -rf "$state" && mkdir -p "$state"
    LD_LIBRARY_PATH="$bundle/lib" TMPDIR="$state" setsid taskset -c "$cpus" python3 "$root/tools/soak/soak.py" \
      --build "$bundle" --backend cuda --duration "$seconds" --rate "$rate" --window 120 --sample 5 \
      --json "$state/soak-gpu.json" >"$state/soak.log" 2>&1 </dev/null &
    echo "soak started for ${seconds}s at ${rate} streams/s on CPUs $cpus"
    ;;
  collect)
    while pgrep -f "tools/soak/soak.py" >/dev/null; do sleep 5; done
    cat "$state/soak.log"
    mkdir -p "$out"
    tar -C "$state" -czf "$out/soak-gpu.tar.gz" . 2>/dev/null
    ;;
  *)
    echo "usage: $0 start [SECONDS] [RATE] [CPUS] | collect" >&2
    exit 2
    ;;
esac
