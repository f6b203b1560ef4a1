#!/usr/bin/env bash
# Trains and evaluates tern-demo-dit and fmnist-classifier on one CUDA GPU, end to end:
#   1. checks the samplers against closed forms (check_samplers.py),
#   2. trains the classifier (train_classifier.py),
#   3. trains the DiT for TRAIN_SECONDS of training time (train_dit.py),
#   4. evaluates it with the classifier (tools/eval/eval_dit.py),
#   5. writes the golden reference outputs (golden.py, float64 on the CPU).
# DATA is the packed Fashion-MNIST subset (python3 tools/train/dit/fmnist.py --out DATA).
#
#   bash tools/train/dit/run_all.sh DATA OUTDIR [TRAIN_SECONDS (300)]
#
# OUTDIR receives fmnist-classifier/ and tern-demo-dit/ laid out as in models/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=$1
out=$2
secs=${3:-300}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
python3 "$here/check_samplers.py"
python3 "$here/train_classifier.py" --data "$data" --out "$out/fmnist-classifier"
python3 "$here/train_dit.py" --data "$data" --out "$out/tern-demo-dit" --max-train-seconds "$secs"
python3 "$here/../../eval/eval_dit.py" --model "$out/tern-demo-dit" --classifier "$out/fmnist-classifier" \
  --data "$data" --json "$out/tern-demo-dit/eval.json" --grid "$out/tern-demo-dit/samples.png" \
  | tee "$out/tern-demo-dit/eval.log"
python3 "$here/golden.py" --model "$out/tern-demo-dit" --out "$out/tern-demo-dit/golden.json"
