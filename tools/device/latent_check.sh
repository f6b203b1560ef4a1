#!/usr/bin/env bash
# On the GPU machine, from the repository root with the bundle from tools/device/bundle.sh in
# .device-bundle/: latent DiTs and their VAE decoder.
#   1. cuda_dit_ops_test: every DiT op and the VAE ops (convolution, GroupNorm, upsampling, the
#      one-head 512-wide mid-block attention) on CUDA against the CPU reference, and a tiny latent
#      DiT's step and VAE decode, decodes bitwise the same alone and batched through graphs.
#   2. tools/train/dit/latent_reference.py (PyTorch, float64, diffusers' math) against tern's CPU
#      ops (float32) and CUDA ops (float32, bfloat16) on tern-mkmodel models: tiny in both layouts
#      and with per-block embedders, DiT-XL/2 at 256 (diffusers) and 512 (original); diffusers
#      itself cross-checks the plain modules when it is importable.
#   3. VAE decode of 32x32x4 and 64x64x4 latents at batch 1 and 16: tern-vae-bench (bf16, CUDA
#      graphs) and PyTorch eager bf16 in the same run.
# Outputs land in $OUT (or /tmp); the exit status is 1 when a check fails.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
models=/tmp/tern-latent
out=${OUT:-/tmp}
mkdir -p "$models"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c 'import diffusers; print("diffusers", diffusers.__version__)' 2>/dev/null || echo "diffusers: not installed"
status=0

"$bundle/run.sh" tests/cuda_dit_ops_test --gtest_brief=1 2>&1 | tee "$out/cuda_dit_ops_test.log" | tail -n 40
[[ ${PIPESTATUS[0]} == 0 ]] || status=1

make_model() {  # name preset layout dtype [extra flags]
  "$bundle/run.sh" bin/tern-mkmodel --arch dit --preset "$2" --layout "$3" --dtype "$4" --seed 5 "${@:5}" \
    --out "$models/$1" || status=1
}
make_model tiny-diffusers tiny diffusers float32
make_model tiny-original tiny original float32
make_model tiny-distinct tiny diffusers float32 --distinct_block_embedders
make_model xl256-diffusers dit-xl-2-256 diffusers bfloat16
make_model xl512-original dit-xl-2-512 original bfloat16

check() {  # name backends...
  local name=$1
  shift
  local compares=()
  for backend in "$@"; do
    local b=${backend%%-*} d=float32
    [[ $backend == *-* ]] && d=${backend#*-}
    "$bundle/run.sh" bin/tern-vae-bench --model "$models/$name" --backend "$b" --dtype "$d" \
      --dump "$models/$name-$backend.safetensors" || status=1
    compares+=("$b-$d:$models/$name-$backend.safetensors")
  done
  echo "== $name"
  python3 tools/train/dit/latent_reference.py --model "$models/$name" --check-diffusers --compare "${compares[@]}" \
    2>&1 | grep -v -i warn || status=1
}
check tiny-diffusers cpu cuda-float32 cuda-bfloat16
check tiny-original cpu cuda-float32 cuda-bfloat16
check tiny-distinct cpu cuda-float32
check xl256-diffusers cpu cuda-float32 cuda-bfloat16
check xl512-original cuda-float32 cuda-bfloat16

"$bundle/run.sh" bin/tern-vae-bench --vae "$models/xl256-diffusers/vae" --backend cuda --dtype bfloat16 \
  --latent-sizes 32,64 --batches 1,16 --iters 10 --json "$out/tern-vae-bench.json" || status=1
python3 tools/device/vae_decode_torch.py --vae "$models/xl256-diffusers/vae" --dtype bfloat16 \
  --latent-sizes 32,64 --batches 1,16 --iters 10 --json "$out/torch-vae-decode.json" 2>&1 | grep -v -i warn
exit $status
