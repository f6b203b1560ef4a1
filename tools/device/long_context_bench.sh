#!/usr/bin/env bash
# On the GPU machine: long contexts with KV quantization and MoA spans, in one
# command of about five minutes on an H100. Run from the repository root with
# the bundle in .device-bundle/ (TERN_BUNDLE_BINARIES="tern-mkmodel
# tern-long-context-bench tern-prefill-attention-bench tern-retrieval"
# TERN_BUNDLE_TESTS=0 tools/device/bundle.sh):
#   tools/device/long_context_bench.sh [model] [engine] [prefill] [retrieval]   (default: all)
# model      random fp16 weights of the Llama-3-8B shape (tern-mkmodel, vocab 128256,
#            max_position_embeddings 16384) into $MODEL_DIR; kept when present
# engine     tern-long-context-bench through the engine ternd runs: at one KV memory
#            ($KV_MIB, 16 GiB), sequences of 8k and 16k tokens; for each KV dtype in
#            $KV_DTYPES, dense attention and a MoA plan ($MOA_PLAN, default MoA's published
#            Llama-3-8B plan in tools/moa/plans/, about 49% density; a path relative to the
#            repository root or absolute, e.g. tools/moa/plans/llama-3-8b-moa-capped-50.tern.json,
#            every head within half the context): sequences at once, KV blocks held,
#            steady decode tokens/s against dense and against the byte floor. The MoA
#            rows cut the plan's 32 layers into at most $KV_GROUPS KV-cache groups
#            (default 8: a block table per 4 layers that read alike); KV_GROUPS="8 1"
#            also runs the single-table layout (the union rule) into long-context-g1.json
# prefill    tern-prefill-attention-bench --moa-plan ($MOA_PLAN): one 16k prompt through the
#            plan's 32 layers, MoA flash attention time against dense, for each KV
#            dtype in $KV_DTYPES (auto: prefill-moa-16k.json; fp8, int8:
#            prefill-moa-16k-<dtype>.json)
# retrieval  tern-retrieval on the demo LLM (CUDA, float16) at 512/1k/2k, 200 cases
#            each, with the KV cache in float16, fp8 and int8
# KV_DTYPES defaults to "auto" (the compute dtype); "auto fp8 int8" adds the
# quantized caches, whose prompts the flash prefill kernel computes as it does
# native ones (the engine phase then runs three times as many prompts).
# Results (JSON and logs) land in $OUT (default /tmp/long-context).
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=${OUT:-/tmp/long-context}
phases=${*:-model engine prefill retrieval}
model_dir=${MODEL_DIR:-/tmp/tern-models/llama-3-8b-16k-float16}
kv_mib=${KV_MIB:-16384}
kv_dtypes=${KV_DTYPES:-auto}
kv_groups=${KV_GROUPS:-8}
plan=${MOA_PLAN:-tools/moa/plans/gradientai-Llama-3-8B-Instruct-262k.moa_alpha_beta.json}
[[ $plan == /* ]] || plan="$root/$plan"
if [[ ! -f $plan ]]; then
  echo "MOA_PLAN: no plan file at $plan" >&2
  exit 2
fi
demo="$root/models/tern-demo-llm"
mkdir -p "$out"
echo "MoA plan: $plan" | tee -a "$out/times.log"
# shellcheck disable=SC2317  # called through step
run_tool() { "$bundle/run.sh" "$@"; }
status=0
step() {  # step NAME COMMAND...: runs it with its output in $out/NAME.log, timed
  local name=$1
  shift
  local start=$SECONDS
  "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc, $((SECONDS - start)) s" | tee -a "$out/times.log"
  [[ $rc == 0 ]] || status=1
}

if [[ " $phases " == *" model "* && ! -f "$model_dir/config.json" ]]; then
  step mkmodel run_tool bin/tern-mkmodel --arch llama --preset llama-3-8b --vocab-size 128256 \
    --max-position-embeddings 16384 --seed 1 --dtype float16 --out "$model_dir"
fi
if [[ " $phases " == *" engine "* ]]; then
  for groups in $kv_groups; do
    suffix=$([[ $groups == 8 ]] && echo "" || echo "-g$groups")
    step "engine$suffix" run_tool bin/tern-long-context-bench --model "$model_dir" --backend cuda --dtype float16 \
      --kv-cache-mib "$kv_mib" --contexts 8192,16384 --kv-cache-dtypes "${kv_dtypes// /,}" --moa-plan "$plan" \
      --max-kv-cache-groups "$groups" --decode-steps 64 --json "$out/long-context$suffix.json"
  done
fi
if [[ " $phases " == *" prefill "* ]]; then
  for kv in $kv_dtypes; do
    suffix=$([[ $kv == auto ]] && echo "" || echo "-$kv")
    step "prefill$suffix" run_tool bin/tern-prefill-attention-bench --moa-plan="$plan" --context=16384 \
      --dtype=float16 --kv-dtype="$kv" --iters=5 --json="$out/prefill-moa-16k$suffix.json"
  done
fi
if [[ " $phases " == *" retrieval "* ]]; then
  step retrieval-cases python3 tools/eval/retrieval_cases.py --lengths 512 1024 2048 --cases 200 \
    --out "$out/retrieval-cases.jsonl"
  for kv in auto fp8 int8; do
    step "retrieval-$kv" run_tool bin/tern-retrieval --backend cuda --dtype float16 --model "$demo" \
      --cases "$out/retrieval-cases.jsonl" --batch 32 --kv-cache-dtype "$kv" --json "$out/retrieval-kv-$kv.json"
  done
fi
exit $status
