#!/usr/bin/env bash
# Runs a command from the tern device bundle with its libraries on the path:
#   .device-bundle/run.sh ctest -L gpu --output-on-failure
#   .device-bundle/run.sh bin/ternd --model DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -d "$here/lib" && -f "$here/bundle.tar.xz" ]]; then
  tar -C "$here" -xJf "$here/bundle.tar.xz"
fi
export TERN_BIN_DIR="$here/bin"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd "$here"
exec "$@"
