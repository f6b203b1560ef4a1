#!/usr/bin/env bash
# Runs one fuzz target for SECONDS over a scratch copy of its committed corpus
# (fuzz/corpus/TARGET), so a short run never changes the tree. Exits 77
# (ctest: skipped) when the target was not built (no clang or libFuzzer);
# otherwise libFuzzer's status: 0 when nothing crashed, and on a crash the
# reproducer's path is printed (kept under BUILD_DIR/crashes/TARGET/).
# Usage: fuzz/run_short.sh BUILD_DIR TARGET SECONDS
set -euo pipefail
build_dir=$1
target=$2
seconds=$3
source_dir=$(cd "$(dirname "$0")" && pwd)
binary="$build_dir/$target"
if [[ ! -x "$binary" ]]; then
  echo "skipped: $binary was not built (see the fuzz_build test)"
  exit 77
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
crashes="$build_dir/crashes/$target"
mkdir -p "$crashes"
# -timeout: one input taking longer is a hang (a finding); -rss_limit_mb: memory growth is one too.
exec "$binary" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$crashes/" "$scratch" "$source_dir/corpus/$target"
