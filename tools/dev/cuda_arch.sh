#!/usr/bin/env bash
# Prints the CUDA architecture to compile for: the first visible GPU's
# (e.g. 90a on H100/H200, 80 on A100), or 90a when there is no GPU.
set -euo pipefail
cap=""
if command -v nvidia-smi >/dev/null 2>&1; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .') || cap=""
fi
case "$cap" in
  "") echo 90a ;;
  90) echo 90a ;;
  *) echo "$cap" ;;
esac
