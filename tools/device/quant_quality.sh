#!/usr/bin/env bash
# On the GPU machine: every weight quantization method on the demo LLM, then its quality through
# tern's CUDA backend. Run from the repository root with the bundle in .device-bundle/
# (TERN_BUNDLE_TARGETS="tern-quantize tern-perplexity tern-retrieval" TERN_BUNDLE_BINARIES="tern-quantize
# tern-perplexity tern-retrieval" TERN_BUNDLE_TESTS=0 tools/device/bundle.sh) and python3 with PyTorch,
# transformers, tokenizers and safetensors:
#   tools/device/quant_quality.sh [quantize] [evaluate]   (default: both)
# quantize   round-to-nearest checkpoints (tern-quantize) and the calibrated methods of
#            tools/quantize/calibrate/ (GPTQ, SmoothQuant + INT8, FP8 with static activation
#            scales, LLM-MQ plans at 6 and 5 average bits, then tern-quantize mixed:<plan>),
#            calibrated on loadtest/prompts/lima.csv
# evaluate   per scheme: tern-perplexity --backend cuda on the first 131072 bytes of the WikiText-2
#            test split (the text of bench/RESULTS.md's weight table) and tern-retrieval at 2048
#            tokens (200 cases); one table row per scheme, also in $OUT/quant_quality.md
# A method that fails leaves its row with the failure and the log's name; the rest go on.
# Everything lands in $OUT (default /tmp/quant-quality): checkpoints/, logs/, plans/, JSON results.
set -uo pipefail
root=$(pwd)
bundle="$root/.device-bundle"
out=$(realpath -m "${OUT:-/tmp/quant-quality}")  # absolute: run.sh runs tools from the bundle
phases=${*:-quantize evaluate}
model="$root/models/tern-demo-llm"
text="$root/tests/data/text/wikitext-2-test.txt"
calibration="$root/loadtest/prompts/lima.csv"
calibrate="$root/tools/quantize/calibrate"
ckpt="$out/checkpoints"
logs="$out/logs"
mkdir -p "$ckpt" "$logs" "$out/plans"
run_tool() { "$bundle/run.sh" "$@"; }

for f in "$model/config.json" "$text" "$calibration" "$bundle/run.sh"; do
  [[ -e "$f" ]] || { echo "quant_quality.sh: missing $f" >&2; exit 1; }
done

# name|how the checkpoint is made (its directory is $ckpt/name; fp16 is the model itself)
schemes=(
  "fp16|"
  "rtn-w8a16|rtn w8a16"
  "fp8|rtn fp8"
  "int8|rtn int8"
  "int8-smoothquant|smoothquant"
  "fp8-static|fp8_static"
  "rtn-w4a16-g128|rtn w4a16-g128"
  "rtn-w4a16-g128-asym|rtn w4a16-g128-asym"
  "gptq-w4a16-g128|gptq --bits 4 --group-size 128"
  "gptq-w4a16-g128-asym|gptq --bits 4 --group-size 128 --asym"
  "gptq-w4a16-g128-actorder|gptq --bits 4 --group-size 128 --act-order"
  "gptq-w4a16-g32|gptq --bits 4 --group-size 32"
  "mixed-6bit|mixed 6"
  "mixed-5bit|mixed 5"
)

# make NAME HOW...: writes $ckpt/NAME; its output goes to $logs/NAME.quantize.log.
make_checkpoint() {
  local name=$1 how=$2
  shift 2
  local dir="$ckpt/$name"
  rm -rf "$dir"
  case $how in
    rtn) run_tool bin/tern-quantize --model "$model" --out "$dir" --scheme "$1" ;;
    gptq) python3 "$calibrate/gptq.py" --model "$model" --out "$dir" --calibration "$calibration" \
            --report "$out/$name.gptq.json" "$@" ;;
    smoothquant)
      python3 "$calibrate/smoothquant.py" --model "$model" --out "$ckpt/smoothed" --calibration "$calibration" &&
        run_tool bin/tern-quantize --model "$ckpt/smoothed" --out "$dir" --scheme int8 ;;
    fp8_static) python3 "$calibrate/fp8_static.py" --model "$model" --out "$dir" --calibration "$calibration" ;;
    mixed)
      [[ -f "$out/plans/mixed-$1bit.json" ]] ||
        python3 "$calibrate/llm_mq.py" --model "$model" --out "$out/plans" --budgets 6 5 \
          --calibration "$calibration" &&
        run_tool bin/tern-quantize --model "$model" --out "$dir" --scheme "mixed:$out/plans/mixed-$1bit.json" ;;
    *) echo "unknown method $how"; return 1 ;;
  esac
}

if [[ " $phases " == *" quantize "* ]]; then
  rm -f "$out/plans/"*.json
  for entry in "${schemes[@]}"; do
    name=${entry%%|*}
    how=${entry#*|}
    [[ -z "$how" ]] && continue
    echo "== quantize $name"
    rm -f "$logs/$name.quantize.failed"
    # shellcheck disable=SC2086
    if make_checkpoint "$name" $how >"$logs/$name.quantize.log" 2>&1; then
      tail -n 3 "$logs/$name.quantize.log"
    else
      echo "FAILED (logs/$name.quantize.log):"
      tail -n 5 "$logs/$name.quantize.log"
      rm -rf "${ckpt:?}/$name"
      echo failed >"$logs/$name.quantize.failed"
    fi
  done
fi

if [[ " $phases " == *" evaluate "* ]]; then
  cases="$out/retrieval-cases-2k.jsonl"
  python3 tools/eval/retrieval_cases.py --lengths 2048 --cases 200 --out "$cases" >/dev/null ||
    echo "retrieval cases could not be made; the retrieval column stays empty"
  table="$out/quant_quality.md"
  {
    echo "| scheme | token perplexity | vs fp16 | retrieval 2k | note |"
    echo "| --- | --- | --- | --- | --- |"
  } >"$table"
  cat "$table"
  fp16_ppl=""
  for entry in "${schemes[@]}"; do
    name=${entry%%|*}
    dir="$ckpt/$name"
    [[ $name == fp16 ]] && dir=$model
    ppl="-" vs="-" acc="-" note=""
    if [[ -f "$logs/$name.quantize.failed" ]]; then
      note="quantize failed: logs/$name.quantize.log"
    elif [[ ! -f "$dir/config.json" ]]; then
      note="no checkpoint (run the quantize phase)"
    else
      if run_tool bin/tern-perplexity --backend cuda --model "$dir" --text "$text" --max-bytes 131072 \
        --json "$out/ppl-$name.json" >"$logs/$name.perplexity.log" 2>&1; then
        ppl=$(awk '/^token perplexity/{print $3}' "$logs/$name.perplexity.log")
        weights=$(sed -n 's/.*, weights \(.*\), kv cache .*/\1/p' "$logs/$name.perplexity.log" | head -n 1)
        note="weights $weights"
        [[ $name == fp16 ]] && fp16_ppl=$ppl
        if [[ -n "$fp16_ppl" && -n "$ppl" ]]; then
          vs=$(awk -v p="$ppl" -v f="$fp16_ppl" 'BEGIN{printf "%+.2f%%", 100 * (p / f - 1)}')
        fi
      else
        note="perplexity failed: $(tail -n 1 "$logs/$name.perplexity.log")"
      fi
      if [[ -f "$cases" ]]; then
        if run_tool bin/tern-retrieval --backend cuda --dtype float16 --model "$dir" --cases "$cases" --batch 32 \
          --json "$out/retrieval-$name.json" >"$logs/$name.retrieval.log" 2>&1; then
          acc=$(awk '$1 == 2048 {print $3}' "$logs/$name.retrieval.log")
        else
          note="$note; retrieval failed: $(tail -n 1 "$logs/$name.retrieval.log")"
        fi
      fi
    fi
    echo "| $name | ${ppl:--} | $vs | ${acc:--} | $note |" | tee -a "$table"
  done
fi
