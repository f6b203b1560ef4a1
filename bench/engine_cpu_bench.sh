#!/usr/bin/env bash
# Continuous batching on the CPU backend: the issue-4 figures.
#
#   bench/engine_cpu_bench.sh BUILD_DIR [OUT_DIR]
#
# 1. Closed loop (--concurrency 16, --requests N, Vicuna-80 prompts, 64 tokens
#    each with --ignore-eos, seeded) against ternd twice on the same model: with
#    the default scheduler limits (continuous batching, maxNumSeqs 256) and with
#    maxNumSeqs 1 (one request at a time). Output tokens/s of each and the ratio.
# 2. Open loop (Poisson, seeded) at three rates, RATE_FACTORS x the req/s of
#    the batched run in 1: TTFT and ITL p50/p99. A closed loop of 16 is not the
#    engine's capacity (bigger batches go faster), so the defaults 0.5, 1.5 and
#    3 land below, near and above it on the 2-core build machine.
#
# Every run gets a fresh ternd (CPU backend, --grpc-port 0 --http-port 0
# --ports-file, bound to 127.0.0.1) and the same short warm-up, so the weights
# are paged in before the measured run. tern-load writes one JSON report a run
# into OUT_DIR; ternd's /metrics before and after each measured run is saved
# too (engine steps, tokens). The summary table goes to stdout and to
# OUT_DIR/summary.md. Needs ternd, tern-load and tern-mkmodel in BUILD_DIR/bin,
# python3 and curl.
#
# Knobs (environment):
#   PRESET=100m          tern-mkmodel preset (100m: ~106M-parameter Llama; tiny)
#   MODEL_DIR=/tmp/tern-bench-$PRESET   generated once, reused when present
#   REQUESTS=32 CONCURRENCY=16 MAX_TOKENS=64 SEED=0
#   RATE_FACTORS="0.5 1.5 3"   open-loop rates as multiples of step 1's req/s
#   RATES="..."          explicit rates (req/s) instead of RATE_FACTORS
#   DURATION=40          seconds each open-loop run sends for
#   SKIP_SERIAL=1        skip the maxNumSeqs 1 run (e.g. for a quick look)
#   SUMMARY_ONLY=1       run nothing; print the table of the reports in OUT_DIR
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$1" && pwd)
out=${2:-/tmp/tern-engine-cpu-bench}
mkdir -p "$out"
out=$(cd "$out" && pwd)

preset=${PRESET:-100m}
model_dir=${MODEL_DIR:-/tmp/tern-bench-$preset}
requests=${REQUESTS:-32}
concurrency=${CONCURRENCY:-16}
max_tokens=${MAX_TOKENS:-64}
seed=${SEED:-0}
rate_factors=${RATE_FACTORS:-0.5 1.5 3}
duration=${DURATION:-40}
prompts=$root/loadtest/prompts/vicuna80.csv
model_name=bench-$preset

for bin in ternd tern-load tern-mkmodel; do
  [[ -x $build/bin/$bin ]] || { echo "engine_cpu_bench: $build/bin/$bin missing" >&2; exit 2; }
done

if [[ ! -f $model_dir/config.json ]]; then
  echo "== generating $preset Llama into $model_dir"
  "$build/bin/tern-mkmodel" --arch llama --preset "$preset" --seed 0 \
    --tokenizer "$root/tests/data/tokenizers/llama2" --out "$model_dir"
fi

# Two configs that differ only in maxNumSeqs. No tenants: no API keys.
cat > "$out/config-batched.json" <<EOF
{"models": [{"name": "$model_name", "path": "$model_dir", "backend": "cpu"}], "logLevel": "warn"}
EOF
cat > "$out/config-serial.json" <<EOF
{"models": [{"name": "$model_name", "path": "$model_dir", "backend": "cpu", "maxNumSeqs": 1}],
 "logLevel": "warn"}
EOF

ternd_pid=
grpc_port=
http_port=
stop_ternd() {
  [[ -n $ternd_pid ]] || return 0
  kill -TERM "$ternd_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$ternd_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$ternd_pid" 2>/dev/null || true
  wait "$ternd_pid" 2>/dev/null || true
  ternd_pid=
}
trap stop_ternd EXIT
trap 'exit 130' INT TERM

# start_ternd CONFIG LABEL: a fresh ternd on free loopback ports, warmed up.
start_ternd() {
  local config=$1 label=$2 ports=$out/ports-$2.json
  rm -f "$ports"
  "$build/bin/ternd" --config "$config" --host 127.0.0.1 --grpc-port 0 --http-port 0 \
    --ports-file "$ports" > "$out/ternd-$label.log" 2>&1 &
  ternd_pid=$!
  for _ in $(seq 1 1200); do  # 120 s
    [[ -s $ports ]] && break
    kill -0 "$ternd_pid" 2>/dev/null || { echo "ternd exited; see $out/ternd-$label.log" >&2; exit 1; }
    sleep 0.1
  done
  [[ -s $ports ]] || { echo "ternd did not start in 120 s" >&2; exit 1; }
  grpc_port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc_port"])' "$ports")
  http_port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_port"])' "$ports")
  # Warm-up (not measured): pages the weights in, touches every code path once.
  "$build/bin/tern-load" --target "127.0.0.1:$grpc_port" --model "$model_name" --prompts "$prompts" \
    --concurrency 2 --requests 4 --max-tokens 8 --ignore-eos --seed 999 --max-time 120 \
    > "$out/warmup-$label.txt" 2>&1
}

metrics() {
  for _ in 1 2 3; do
    curl -sf --max-time 10 "http://127.0.0.1:$http_port/metrics" > "$1" && return 0
    sleep 1
  done
  echo "   (could not read /metrics)" >&2
}

# CPU accounting, in clock ticks: ternd's utime + stime, and the whole
# machine's busy time (others' builds show up as busy minus ternd).
ticks_ternd() { awk '{print $14 + $15}' "/proc/$ternd_pid/stat"; }
ticks_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# load LABEL ARGS...: one measured tern-load run against the running ternd.
load() {
  local label=$1
  shift
  metrics "$out/metrics-$label-before.txt"
  echo "== $label: tern-load $*"
  local rc=0 t0 b0 w0
  t0=$(ticks_ternd) b0=$(ticks_busy) w0=$(date +%s.%N)
  "$build/bin/tern-load" --target "127.0.0.1:$grpc_port" --model "$model_name" --prompts "$prompts" \
    --max-tokens "$max_tokens" --ignore-eos --seed "$seed" --json "$out/$label.json" "$@" \
    > "$out/$label.txt" 2>&1 || rc=$?
  local wall
  wall=$(awk -v a="$w0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  printf '{"ternd_ticks": %d, "busy_ticks": %d, "clk_tck": %d, "wall_s": %s, "loadavg": "%s"}\n' \
    $(( $(ticks_ternd) - t0 )) $(( $(ticks_busy) - b0 )) "$(getconf CLK_TCK)" "$wall" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" > "$out/cpu-$label.json"
  metrics "$out/metrics-$label-after.txt"
  sed -n '1,3p' "$out/$label.txt"
  [[ $rc -eq 0 ]] || echo "   (tern-load exit $rc; see $out/$label.txt)"
}

if [[ -z ${SUMMARY_ONLY:-} ]]; then
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "ternd: $("$build/bin/ternd" --version)"
  echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (dirty tree)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "model: $model_dir (preset $preset)"
} > "$out/env.txt"
cat "$out/env.txt"

closed=(--concurrency "$concurrency" --requests "$requests" --max-time 600)

# 1. Continuous batching against one request at a time.
start_ternd "$out/config-batched.json" batched
load closed-batched "${closed[@]}"
stop_ternd
if [[ -z ${SKIP_SERIAL:-} ]]; then
  start_ternd "$out/config-serial.json" serial
  load closed-serial "${closed[@]}"
  stop_ternd
fi

# 2. Open loop at three rates around the measured capacity.
if [[ -n ${RATES:-} ]]; then
  rates=$RATES
else
  capacity=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["request_throughput"])' \
    "$out/closed-batched.json")
  rates=$(python3 -c 'import sys; c=float(sys.argv[1]); print(" ".join("%.3g" % (c*float(f)) for f in sys.argv[2:]))' \
    "$capacity" $rate_factors)
fi
echo "$rates" > "$out/rates.txt"
i=0
for rate in $rates; do
  i=$((i + 1))
  start_ternd "$out/config-batched.json" "rate$i"
  load "open-rate$i" --rate "$rate" --duration "$duration" --max-time $((duration + 90))
  stop_ternd
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/env.txt"
fi

python3 - "$out" <<'PY' | tee "$out/summary.md"
import glob, json, os, re, sys
out = sys.argv[1]

def counter(path, name):
    total = 0.0
    try:
        for line in open(path):
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
    except OSError:
        return None
    return total

def engine(label):
    b, a = (f"{out}/metrics-{label}-{w}.txt" for w in ("before", "after"))
    steps = [counter(p, "tern_engine_steps_total") for p in (b, a)]
    gen = [counter(p, "tern_generation_tokens_total") for p in (b, a)]
    prm = [counter(p, "tern_prompt_tokens_total") for p in (b, a)]
    if None in steps + gen + prm or steps[1] <= steps[0]:
        return "-", "-"
    n = steps[1] - steps[0]
    return f"{n:.0f}", f"{(gen[1] - gen[0] + prm[1] - prm[0]) / n:.1f}"

def cpu(label, output_tokens):
    try:
        c = json.load(open(f"{out}/cpu-{label}.json"))
    except (OSError, ValueError):
        return "-", "-", None
    t, w = c["clk_tck"], c["wall_s"]
    ternd = c["ternd_ticks"] / t / w
    others = max(0.0, (c["busy_ticks"] - c["ternd_ticks"]) / t / w)
    per_cpu_s = output_tokens / (c["ternd_ticks"] / t) if c["ternd_ticks"] else None
    return f"{ternd:.2f}", f"{others:.2f}", per_cpu_s

def pct(r, m, p):
    v = r["latency_ms"][m][p]
    return "-" if v is None else f"{v:.0f}"

rows, per_cpu = [], {}
for label in ["closed-batched", "closed-serial"] + sorted(
        os.path.basename(p)[:-5] for p in glob.glob(f"{out}/open-rate*.json")):
    path = f"{out}/{label}.json"
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    s, c = r["summary"], r["config"]
    load = (f"closed, concurrency {c.get('concurrency')}, {s['sent']} requests" if label.startswith("closed")
            else f"open, Poisson {c.get('rate'):.3g} req/s, {c.get('duration_s'):.0f} s")
    sched = "maxNumSeqs 1" if label == "closed-serial" else "default (256)"
    steps, tps = engine(label)
    ternd_cores, other_cores, per_cpu_s = cpu(label, s["output_tokens"])
    per_cpu[label] = per_cpu_s
    rows.append((label, load, sched, s["completed"], s["failed"], f"{s['elapsed_s']:.1f}",
                 f"{s['request_throughput']:.2f}", f"{s['output_token_throughput']:.1f}",
                 pct(r, "ttft", "p50"), pct(r, "ttft", "p99"), pct(r, "itl", "p50"), pct(r, "itl", "p99"),
                 steps, tps, ternd_cores, other_cores, "-" if per_cpu_s is None else f"{per_cpu_s:.1f}"))

print("| run | load | scheduler | ok | failed | run (s) | req/s | output tok/s | TTFT p50 | TTFT p99 "
      "| ITL p50 | ITL p99 | engine steps | tokens / step | ternd cores | other cores | output tok / ternd CPU-s |")
print("| --- " * 17 + "|")
for row in rows:
    print("| " + " | ".join(str(x) for x in row) + " |")
tp = {row[0]: float(row[7]) for row in rows}
if "closed-batched" in tp and tp.get("closed-serial"):
    print(f"\ncontinuous batching / one at a time: {tp['closed-batched'] / tp['closed-serial']:.2f}x output tok/s", end="")
    if per_cpu.get("closed-batched") and per_cpu.get("closed-serial"):
        print(f", {per_cpu['closed-batched'] / per_cpu['closed-serial']:.2f}x output tokens per ternd CPU-second", end="")
    print()
print("\nlatencies in ms (client side, tern-load); tokens / step = (prompt + generated tokens) / engine steps "
      "during the run (from ternd's /metrics); "
      "ternd cores = ternd's CPU time / wall time of the run; other cores = the rest of the machine's busy "
      "time (tern-load, other builds) / wall time; this machine has %d cores" % os.cpu_count())
PY
cat "$out/env.txt"
echo "reports: $out"
