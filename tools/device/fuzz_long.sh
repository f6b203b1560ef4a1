#!/usr/bin/env bash
# On the GPU machine: the long fuzzing runs (fuzz/README.md, "Long runs") on the host's spare
# cores while the GPU works. Run from the repository root with a bundle that carries the targets
# (TERN_BUNDLE_FUZZ=1 tools/device/bundle.sh):
#   tools/device/fuzz_long.sh start SECONDS CPUS [TARGET[=WORKERS]...]
#                                                  the named targets (default: all, workers by
#                                                  their speed) at once in the background, pinned
#                                                  to CPUS (taskset list, e.g. 3-15); returns at once
#   tools/device/fuzz_long.sh collect              waits for the runs to end, prints one summary line
#                                                  per target and copies logs and reproducers to $OUT
# `start` copies the executables, their libraries, run_long.sh and the corpora into /tmp first:
# the runs outlive later commands, whose fresh working-tree copies replace this checkout and
# drop a bundle they do not carry.
# The targets were built with this tree's absolute path (for the tokenizers they load), so that path
# is linked to this checkout when it does not exist here.
set -uo pipefail
root=$(pwd)
bundle=$(cd "$root/.device-bundle" && pwd -P)  # resolved: the runs outlive a relinked .device-bundle
state=/tmp/tern-fuzz-long
out=${OUT:-/tmp/fuzz-long}

# Workers per target: the slow parsers (whole tokenizers, templates rendered) get two.
workers_for() {
  case "$1" in
    request_validation_fuzzer|server_config_fuzzer) echo 1 ;;
    *) echo 2 ;;
  esac
}

case "${1:-}" in
  start)
    seconds=${2:?seconds}
    cpus=${3:?cpu list}
    targets=("${@:4}")
    [[ -d "$bundle/lib" ]] || "$bundle/run.sh" true
    if [[ ${#targets[@]} -eq 0 ]]; then
      for target in "$bundle"/fuzz/*_fuzzer; do targets+=("$(basename "$target")"); done
    fi
    # TERN_FUZZ_SOURCE_DIR, compiled in as "<root>/fuzz/..".
    built_root=$(grep -aoE '/[[:alnum:]_./-]*/fuzz/\.\.' "$bundle/fuzz/tokenizer_codec_fuzzer" | head -n 1 | sed 's#/fuzz/\.\.$##')
    if [[ -n "${built_root:-}" && ! -e "$built_root" ]]; then
      mkdir -p "$(dirname "$built_root")" && ln -s "$root" "$built_root"
    fi
    rm -rf "$state" && mkdir -p "$state/build" "$state/fuzz/corpus"
    cp -r "$bundle/lib" "$state/lib"
    cp "$root/fuzz/run_long.sh" "$state/fuzz/"
    for spec in "${targets[@]}"; do
      name=${spec%%=*}
      workers=${spec#*=}
      [[ "$spec" == *=* ]] || workers=$(workers_for "$name")
      if [[ ! -x "$bundle/fuzz/$name" ]]; then
        echo "$name is not in the bundle" >&2
        continue
      fi
      cp "$bundle/fuzz/$name" "$state/build/$name"
      cp -r "$root/fuzz/corpus/$name" "$state/fuzz/corpus/$name"
      LD_LIBRARY_PATH="$state/lib" setsid taskset -c "$cpus" "$state/fuzz/run_long.sh" "$state/build" "$name" \
        "$seconds" "$workers" >"$state/$name.summary" 2>"$state/$name.log" </dev/null &
    done
    echo "started $(ls "$state/build" | wc -l) targets for ${seconds}s on CPUs $cpus (source root ${built_root:-?})"
    ;;
  collect)
    while pgrep -f "$state/fuzz/run_long.sh" >/dev/null; do sleep 5; done
    mkdir -p "$out"
    cat "$state"/*.summary
    tar -C "$state" -czf "$out/fuzz-long.tar.gz" --exclude='build/*_fuzzer' --exclude=lib . 2>/dev/null
    ;;
  *)
    echo "usage: $0 start SECONDS CPUS | collect" >&2
    exit 2
    ;;
esac
