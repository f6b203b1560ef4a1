#!/usr/bin/env bash
# Runs a command from the tern device bundle with its libraries on the path:
#   .device-bundle/run.sh ctest -L gpu --output-on-failure
#   .device-bundle/run.sh bin/ternd --model DIR
# The first use unpacks bundle.tar.xz. Several first uses may start at once
# (a background job beside a test run): they take a lock, and the one that
# unpacks leaves a marker only when tar has finished, so no command ever
# starts on a half-unpacked bundle.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -f "$here/.unpacked" && -f "$here/bundle.tar.xz" ]]; then
  exec 9>"$here/.unpack.lock"
  flock 9
  if [[ ! -f "$here/.unpacked" ]]; then
    tar -C "$here" -xJf "$here/bundle.tar.xz"
    touch "$here/.unpacked"
  fi
  flock -u 9
  exec 9>&-
fi
export TERN_BIN_DIR="$here/bin"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd "$here"
exec "$@"
