#!/usr/bin/env bash
# On the GPU machine, from the repository root with the bundle from tools/device/bundle.sh in
# .device-bundle/ (binaries tern-dit-bench, tern-vae-bench, tern-mkmodel): the diffusion speed
# table of bench/RESULTS.md in one run on one card, tern beside PyTorch.
#   1. a DiT-XL/2 denoising step, bf16, 256 and 1024 tokens, batches 1/8/64 (forward rows):
#      tern-dit-bench (graphs and eager, the linear/attention/other split, cuBLAS's plain GEMMs
#      of the same shapes as the linears' floor), then tools/device/dit_torch_step.py (PyTorch
#      eager bf16, SDPA) at the same shapes; then tern-dit-bench once more with
#      --gemm-autotune 0 (cuBLASLt's heuristic first algorithm per layer) for the autotune's gain;
#   2. VAE decode of 32x32x4 and 64x64x4 latents at batch 1 and 16: tern-vae-bench (bf16, graphs,
#      and a profiled eager decode split into convolutions, attention and the rest) and
#      tools/device/vae_decode_torch.py (PyTorch eager bf16) on the same random VAE.
#   tools/device/dit_speed.sh [--skip-dit] [--skip-vae] [--skip-heuristic]
# Writes $OUT (default /tmp/dit-speed): tern-dit-bench.json, tern-dit-bench-heuristic.json, torch-dit-step.json,
# tern-vae-bench.json, torch-vae-decode.json and their logs.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle/run.sh"
out=${OUT:-/tmp/dit-speed}
models=/tmp/tern-dit-speed
run_dit=1 run_vae=1 run_heuristic=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --skip-dit) run_dit=0; shift ;;
    --skip-vae) run_vae=0; shift ;;
    --skip-heuristic) run_heuristic=0; shift ;;
    *) echo "dit_speed.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out" "$models"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
status=0

if ((run_dit)); then
  "$bundle" bin/tern-dit-bench --dtype bfloat16 --tokens 256,1024 --batches 1,8,64 \
    --json "$out/tern-dit-bench.json" 2>&1 | tee "$out/tern-dit-bench.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  python3 tools/device/dit_torch_step.py --dtype bfloat16 --tokens 256,1024 --batches 1,8,64 \
    --json "$out/torch-dit-step.json" 2>&1 | grep -v -i warn | tee "$out/torch-dit-step.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  if ((run_heuristic)); then
    "$bundle" bin/tern-dit-bench --dtype bfloat16 --tokens 256,1024 --batches 1,8,64 --gemm-autotune 0 \
      --json "$out/tern-dit-bench-heuristic.json" 2>&1 | tee "$out/tern-dit-bench-heuristic.log"
    [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  fi
fi

if ((run_vae)); then
  if [[ ! -f "$models/xl256/vae/config.json" ]]; then
    "$bundle" bin/tern-mkmodel --arch dit --preset dit-xl-2-256 --layout diffusers --dtype bfloat16 --seed 5 \
      --out "$models/xl256" >/dev/null || { echo "tern-mkmodel failed"; exit 1; }
  fi
  "$bundle" bin/tern-vae-bench --vae "$models/xl256/vae" --backend cuda --dtype bfloat16 \
    --latent-sizes 32,64 --batches 1,16 --iters 10 --profile --json "$out/tern-vae-bench.json" 2>&1 |
    tee "$out/tern-vae-bench.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  python3 tools/device/vae_decode_torch.py --vae "$models/xl256/vae" --dtype bfloat16 \
    --latent-sizes 32,64 --batches 1,16 --iters 10 --json "$out/torch-vae-decode.json" 2>&1 |
    grep -v -i warn | tee "$out/torch-vae-decode.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
fi
exit $status
