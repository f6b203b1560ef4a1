#!/usr/bin/env bash
# On the GPU machine: MoA on the demo LLM end to end, in phases that each fit
# one 10-minute command. Run from the repository root with the bundle in
# .device-bundle/ (TERN_BUNDLE_BINARIES="tern-perplexity tern-retrieval
# tern-decode-attention-bench" tools/device/bundle.sh):
#   tools/device/moa_eval.sh [profile] [search] [perplexity] [retrieval] [bench]   (default: all)
# profile     tools/moa/profile_influence.py at 512/1k/2k on calibration sequences (PyTorch)
# search      MoA plans at 25/50/75% mean density at 2048 tokens (moa-<d>), the same
#             with every head capped at the density (--max-head-density, moa-<d>-cap:
#             a bound on what each layer's KV-cache group keeps), the same with the
#             mean of the layers' widest heads bounded by the density instead
#             (--max-layer-density, moa-<d>-layer), and the uniform sliding windows
#             at the same densities (window-<d>) (tools/moa/search.py)
# perplexity  WikiText-2 test through tern (CUDA, float32): dense, then each plan
# retrieval   line retrieval at 512/1k/2k (200 cases each) through tern: dense, then each plan
# bench       decode attention with MoA rows (tern-decode-attention-bench --moa-density)
# Everything lands in $OUT (default /tmp/moa): plans, profiles, JSON results.
# PLANS names the plans the perplexity and retrieval phases judge (default
# "moa-25 window-25 moa-50 window-50 moa-75 window-75"), e.g.
#   PLANS="moa-50-layer moa-25-layer moa-75-cap" tools/device/moa_eval.sh search perplexity retrieval
# A name with a slash is a plan file (from the repository root, or absolute), so
# the committed demo-LLM plans need no profile:
#   PLANS="$(echo tools/moa/plans/tern-demo-llm/{moa-50,moa-50-layer,moa-50-cap,window-50}.json)" \
#     tools/device/moa_eval.sh perplexity retrieval
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=${OUT:-/tmp/moa}
phases=${*:-profile search perplexity retrieval bench}
model="$root/models/tern-demo-llm"
mkdir -p "$out"
run_tool() { "$bundle/run.sh" "$@"; }
plans() {
  echo "${PLANS:-moa-25 window-25 moa-50 window-50 moa-75 window-75}"
}
plan_file() {  # a name in $out (the search phase's), or a path with a slash (from the repository root)
  case $1 in
    /*) echo "$1" ;;
    */*) echo "$root/$1" ;;
    *) echo "$out/$1.json" ;;
  esac
}

if [[ " $phases " == *" profile "* ]]; then
  python3 tools/moa/profile_influence.py --model "$model" --lengths 512 1024 2048 --sequences 32 --out "$out/profile"
fi
if [[ " $phases " == *" search "* ]]; then
  for d in 25 50 75; do
    python3 tools/moa/search.py --profile "$out/profile/influence_L512" "$out/profile/influence_L1024" \
      "$out/profile/influence_L2048" --density "0.$d" --density-length 2048 --out "$out/moa-$d.json"
    python3 tools/moa/search.py --profile "$out/profile/influence_L512" "$out/profile/influence_L1024" \
      "$out/profile/influence_L2048" --density "0.$d" --density-length 2048 --max-head-density "0.$d" \
      --out "$out/moa-$d-cap.json"
    python3 tools/moa/search.py --profile "$out/profile/influence_L512" "$out/profile/influence_L1024" \
      "$out/profile/influence_L2048" --density "0.$d" --density-length 2048 --max-layer-density "0.$d" \
      --out "$out/moa-$d-layer.json"
    python3 tools/moa/search.py --profile "$out/profile/influence_L2048" --density "0.$d" --density-length 2048 \
      --uniform --out "$out/window-$d.json"
  done
fi
if [[ " $phases " == *" perplexity "* ]]; then
  # The text and windows of the KV-cache and weight tables in bench/RESULTS.md: the first
  # 130,416 bytes of the WikiText-2 test split, 19 windows of 2048 tokens.
  text="$root/tests/data/text/wikitext-2-test.txt"
  run_tool bin/tern-perplexity --backend cuda --dtype float32 --model "$model" --text "$text" --max-bytes 131072 \
    --json "$out/ppl-dense.json" | grep -E "attention|perplexity"
  for plan in $(plans); do
    run_tool bin/tern-perplexity --backend cuda --dtype float32 --model "$model" --text "$text" --max-bytes 131072 \
      --attention-scheme "moa:$(plan_file "$plan")" --json "$out/ppl-$(basename "$plan" .json).json" |
      grep -E "attention|perplexity"
  done
fi
if [[ " $phases " == *" retrieval "* ]]; then
  python3 tools/eval/retrieval_cases.py --lengths 512 1024 2048 --cases 200 --out "$out/retrieval-cases.jsonl"
  run_tool bin/tern-retrieval --backend cuda --dtype float16 --model "$model" --cases "$out/retrieval-cases.jsonl" \
    --batch 32 --json "$out/retrieval-dense.json"
  for plan in $(plans); do
    run_tool bin/tern-retrieval --backend cuda --dtype float16 --model "$model" \
      --cases "$out/retrieval-cases.jsonl" --batch 32 --attention-scheme "moa:$(plan_file "$plan")" \
      --json "$out/retrieval-$(basename "$plan" .json).json"
  done
fi
if [[ " $phases " == *" bench "* ]]; then
  run_tool bin/tern-decode-attention-bench --kv-dtype all --moa-density 0.25,0.5,0.75 --json "$out/decode-moa.json"
fi
