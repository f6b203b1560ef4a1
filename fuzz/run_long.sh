#!/usr/bin/env bash
# The long fuzzing run (a benchmark, not a test): one target for SECONDS with WORKERS parallel
# libFuzzer jobs (-fork) over a scratch copy of its committed corpus, so the tree never changes.
# The log goes to stderr; the last line on stdout is a summary that bench/RESULTS.md's
# "Fuzzing" table reads:
#   <target> executions=<N> seconds=<S> exec_per_s=<N/S> cov=<edges> crashes=<C> status=<libFuzzer's>
# A crash, a hang over 25 s or an input using more than 2.5 GB stops the run; its reproducer is
# kept under BUILD_DIR/crashes/TARGET/ (fix it, then commit it under fuzz/corpus/TARGET/crash-*).
# Usage: fuzz/run_long.sh BUILD_DIR TARGET SECONDS [WORKERS]   (WORKERS default 1)
set -uo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 BUILD_DIR TARGET SECONDS [WORKERS]" >&2
  exit 2
fi
build_dir=$1
target=$2
seconds=$3
workers=${4:-1}
source_dir=$(cd "$(dirname "$0")" && pwd)
binary="$build_dir/$target"
if [[ ! -x "$binary" ]]; then
  echo "$binary was not built (fuzz/build.sh)" >&2
  exit 2
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
crashes="$build_dir/crashes/$target"
mkdir -p "$crashes" "$scratch/corpus"
log="$scratch/log"
start=$(date +%s)
"$binary" -fork="$workers" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$crashes/" "$scratch/corpus" "$source_dir/corpus/$target" \
  >"$log" 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))
cat "$log" >&2
# Fork mode reports the running total of executions over all jobs: "#<N>: cov: <E> ... crash: a/b/c".
last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
executions=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
cov=$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$last")
faults=$(sed -E 's#.*oom/timeout/crash: ([0-9]+)/([0-9]+)/([0-9]+).*#\1+\2+\3#' <<<"$last")
crash_files=$(find "$crashes" -type f | wc -l)
echo "$target executions=${executions:-0} seconds=$elapsed exec_per_s=$(( ${executions:-0} / (elapsed > 0 ? elapsed : 1) ))" \
  "cov=${cov:-0} crashes=$crash_files oom_timeout_crash=$(( ${faults:-0} )) status=$status"
exit "$status"
