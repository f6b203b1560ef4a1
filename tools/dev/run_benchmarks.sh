#!/usr/bin/env bash
# Runs every benchmark binary of a build (build/bin/tern-*-bench), each
# printing its table and writing JSON next to it under BUILD_DIR/bench-results/.
set -euo pipefail
build=${1:-build}
mkdir -p "$build/bench-results"
found=0
for bench in "$build"/bin/tern-*-bench; do
  [[ -x "$bench" ]] || continue
  found=1
  name=$(basename "$bench")
  echo "== $name"
  "$bench" --json "$build/bench-results/$name.json"
done
((found)) || echo "no benchmarks built in $build/bin"
