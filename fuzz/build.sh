#!/usr/bin/env bash
# Configures and builds the fuzz targets (fuzz/CMakeLists.txt) with clang into
# BUILD_DIR. Exits 77 (ctest: skipped) when this machine has no clang or no
# libFuzzer runtime, 0 when built, and anything else when the build fails.
# Usage: fuzz/build.sh BUILD_DIR [JOBS]
set -euo pipefail
build_dir=$1
jobs=${2:-2}
source_dir=$(cd "$(dirname "$0")" && pwd)

if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
  echo "skipped: clang is not installed (Debian package clang)"
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  >"$probe/probe.cc"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cc" -o "$probe/probe" 2>"$probe/log"; then
  echo "skipped: clang cannot link -fsanitize=fuzzer (Debian package libclang-rt-14-dev):"
  cat "$probe/log"
  exit 77
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  CC=clang CXX=clang++ cmake -S "$source_dir" -B "$build_dir" "${generator[@]}" >/dev/null
fi
nice cmake --build "$build_dir" -j "$jobs" --target tern_fuzz_all
