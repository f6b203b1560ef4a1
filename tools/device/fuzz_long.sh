#!/usr/bin/env bash
# On the GPU machine: the long fuzzing runs (fuzz/README.md, "Long runs") on the host's spare
# cores while the GPU works. Run from the repository root with a bundle that carries the targets
# (TERN_BUNDLE_FUZZ=1 tools/device/bundle.sh):
#   tools/device/fuzz_long.sh start SECONDS CPUS [SKIP...]
#                                                  every target but SKIP at once in the background,
#                                                  pinned to CPUS (taskset list, e.g. 6-15), each with
#                                                  workers by its speed; returns at once
#   tools/device/fuzz_long.sh collect              waits for the runs to end, prints one summary line
#                                                  per target and copies logs and reproducers to $OUT
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
    skip=" ${*:4} "
    [[ -d "$bundle/lib" ]] || "$bundle/run.sh" true
    # TERN_FUZZ_SOURCE_DIR, compiled in as "<root>/fuzz/..".
    built_root=$(grep -aoE '/[[:alnum:]_./-]*/fuzz/\.\.' "$bundle/fuzz/tokenizer_codec_fuzzer" | head -n 1 | sed 's#/fuzz/\.\.$##')
    if [[ -n "${built_root:-}" && ! -e "$built_root" ]]; then
      mkdir -p "$(dirname "$built_root")" && ln -s "$root" "$built_root"
    fi
    rm -rf "$state" && mkdir -p "$state/build"
    for target in "$bundle"/fuzz/*_fuzzer; do
      name=$(basename "$target")
      [[ "$skip" == *" $name "* ]] && continue
      ln -s "$target" "$state/build/$name"
      LD_LIBRARY_PATH="$bundle/lib" setsid taskset -c "$cpus" "$root/fuzz/run_long.sh" "$state/build" "$name" \
        "$seconds" "$(workers_for "$name")" >"$state/$name.summary" 2>"$state/$name.log" </dev/null &
    done
    echo "started $(ls "$state/build" | wc -l) targets for ${seconds}s on CPUs $cpus (source root ${built_root:-?})"
    ;;
  collect)
    while pgrep -f "$root/fuzz/run_long.sh" >/dev/null; do sleep 5; done
    mkdir -p "$out"
    cat "$state"/*.summary
    tar -C "$state" -czf "$out/fuzz-long.tar.gz" --exclude=build/*_fuzzer . 2>/dev/null
    ;;
  *)
    echo "usage: $0 start SECONDS CPUS | collect" >&2
    exit 2
    ;;
esac
