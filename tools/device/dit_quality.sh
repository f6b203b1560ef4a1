#!/usr/bin/env bash
# The demo DiT's image quality through ternd: class accuracy and Frechet
# distance (tools/eval/score_dit_images.py: fmnist-classifier, against the
# stored statistics of the 10,000 Fashion-MNIST test images) of images that
# ternd makes, to set beside the PyTorch sampler's (models/tern-demo-dit/
# eval.json, tools/eval/eval_dit.py).
#
# The images are eval_dit.py's: class c, image j has noise seed
# 100000 + 100 c + j (with the default 100 a class, exactly its 1,000 images
# of a row), asked for through `tern image` (16 a call, 16 calls in flight,
# so the engine batches them) with DPM-Solver++(2M), 20 steps, guidance 3:
# eval.json's first row (98.8 %, FD 0.859). One ternd serves the model once
# per dtype (models dit-float32, dit-bfloat16, ...), and per weight scheme
# with --weight-schemes (models dit-bfloat16-w8a8-int8, dit-bfloat16-mixed
# for mixed:PLAN, ...: runtime/dit/dit_linear_plan.h), and per DiTFastAttn
# attention plan with --attention-plans (models dit-bfloat16-attn-NAME for
# plan file NAME.json, beside the plain one: runtime/dit/dit_attention_plan.h;
# a plan must be for this script's 20 steps).
#
#   tools/device/dit_quality.sh [--backend cuda|cpu] [--dtypes float32,bfloat16]
#                               [--weight-schemes auto,w8a8-int8,mixed:PLAN]
#                               [--attention-plans PLAN.json,...]
#                               [--per-class 100] [--check-torch]
#
# From the repository root, with a bundle holding ternd and tern
# (.device-bundle/run.sh), or with TERN_BIN_DIR naming a build's bin/ (the
# CPU check on the build machine). Needs python3 with numpy; --check-torch
# also compares the classifier with PyTorch's. Writes $OUT (default
# /tmp/dit-quality): quality-VARIANT.json, images/VARIANT/CLASS/*.png, ternd.log
# (VARIANT: the dtype, then -SCHEME unless auto).
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/dit-quality}
backend=cuda
dtypes=float32,bfloat16
weight_schemes=auto
attention_plans=""
per_class=100
check_torch=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --backend) backend=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --weight-schemes) weight_schemes=$2; shift 2 ;;
    --attention-plans) attention_plans=$2; shift 2 ;;
    --per-class) per_class=$2; shift 2 ;;
    --check-torch) check_torch=--check-torch; shift ;;
    *) echo "dit_quality.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if ! [[ $per_class =~ ^[0-9]+$ ]] || ((per_class < 1 || per_class > 100)); then
  echo "dit_quality.sh: --per-class $per_class is not in 1..100 (seeds are 100 a class apart)" >&2
  exit 2
fi
steps=20 sampler=dpm++2m guidance=3
seed_base=100000 seed_stride=100

# exec: a backgrounded ternd is then this pid itself (run.sh execs too), so
# the EXIT trap stops ternd, not a shell around it.
if [[ -n "${TERN_BIN_DIR:-}" ]]; then
  tern_run() { local exe=$1; shift; exec "$TERN_BIN_DIR/$exe" "$@"; }
else
  tern_run() { local exe=$1; shift; exec "$root/.device-bundle/run.sh" "bin/$exe" "$@"; }
fi
mkdir -p "$out"
rm -rf "$out/images"

# One model per (dtype, weight scheme): "variant" names it.
variants=()
config="$out/ternd.json"
{
  echo '{"models": ['
  sep=""
  for dtype in ${dtypes//,/ }; do
    for scheme in ${weight_schemes//,/ }; do
      label=$scheme
      [[ $scheme == mixed:* ]] && label=mixed
      variant=$dtype
      [[ $scheme != auto ]] && variant=$dtype-$label
      variants+=("$variant")
      echo "$sep{\"name\": \"dit-$variant\", \"path\": \"$root/models/tern-demo-dit\", \"backend\": \"$backend\","
      echo " \"dtype\": \"$dtype\", \"weightScheme\": \"$scheme\", \"diffusion\": {\"max_batch_rows\": 256}}"
      sep=","
      for plan in ${attention_plans//,/ }; do
        plan_name=$(basename "$plan" .json)
        variants+=("$variant-attn-$plan_name")
        echo "$sep{\"name\": \"dit-$variant-attn-$plan_name\", \"path\": \"$root/models/tern-demo-dit\","
        echo " \"backend\": \"$backend\", \"dtype\": \"$dtype\", \"weightScheme\": \"$scheme\","
        echo " \"diffusion\": {\"max_batch_rows\": 256, \"attentionPlan\": \"$(realpath "$plan")\"}}"
      done
    done
  done
  echo ']}'
} >"$config"

ports="$out/ports.json"
rm -f "$ports"
(tern_run ternd --config "$config" --host 127.0.0.1 --grpc-port 0 --http-port 0 --ports-file "$ports" \
  >"$out/ternd.log" 2>&1) &
ternd_pid=$!
trap 'kill -TERM $ternd_pid 2>/dev/null; wait $ternd_pid 2>/dev/null' EXIT
for _ in $(seq 1800); do [[ -f "$ports" ]] && break; sleep 0.1; done
[[ -f "$ports" ]] || { echo "ternd did not start:"; tail -20 "$out/ternd.log"; exit 1; }
grpc=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["grpc_port"])' "$ports")
target=127.0.0.1:$grpc

status=0
for variant in "${variants[@]}"; do
  dir="$out/images/$variant"
  jobs_file="$out/requests-$variant.txt"
  : >"$jobs_file"
  for c in $(seq 0 9); do
    mkdir -p "$dir/$c"
    for ((j = 0; j < per_class; j += 16)); do
      count=$((per_class - j < 16 ? per_class - j : 16))
      seed=$((seed_base + seed_stride * c + j))
      echo "$c $seed $count" >>"$jobs_file"
    done
  done
  echo "== dit-$variant ($backend): $((10 * per_class)) images, $sampler $steps steps, guidance $guidance"
  begin=$(date +%s%N)
  export -f tern_run
  export TERN_BIN_DIR root target variant dir steps sampler guidance
  # shellcheck disable=SC2016
  if ! xargs -P 16 -L 1 bash -c 'tern_run tern --target "$target" --timeout 1800 image -m "dit-$variant" --class-label "$0" \
        --steps "$steps" --sampler "$sampler" --guidance "$guidance" --seed "$1" --count "$2" \
        -o "$dir/$0/s$1.png" >/dev/null' <"$jobs_file"; then
    echo "dit-$variant: a tern image call failed"
    status=1
    continue
  fi
  end=$(date +%s%N)
  made=$(find "$dir" -name '*.png' | wc -l)
  python3 -c 'import sys; n, s = int(sys.argv[1]), int(sys.argv[2]) / 1e9; print(f"{n} images in {s:.1f} s ({n / s:.1f} images/s, 16 tern processes at a time)")' \
    "$made" "$((end - begin))"
  python3 "$root/tools/eval/score_dit_images.py" "$dir" --classifier "$root/models/fmnist-classifier" \
    --json "$out/quality-$variant.json" $check_torch || status=1
done

echo "== PyTorch sampler, same seeds (models/tern-demo-dit/eval.json, $((10 * 100)) images):"
python3 - "$root/models/tern-demo-dit/eval.json" "$per_class" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
row = next(r for r in rows if r["name"] == "dpmpp2m 20 steps, guidance 3.0")
print(f"{row['name']}: class accuracy {100 * row['class_accuracy']:.1f} %, FD {row['fd']:.3f}")
print("per class: " + ", ".join(f"{c}: {100 * v:.0f} %" for c, v in enumerate(row["per_class_accuracy"])))
if int(sys.argv[2]) < 100:
    print(f"(with {sys.argv[2]} a class, FD is biased upward: fewer images than feature dimensions or close)")
PY
exit $status
