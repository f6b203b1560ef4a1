#!/usr/bin/env bash
# Builds tern for sm_90a (H100/H200) and packs what the GPU machine needs to
# run it into .device-bundle/ (git-ignored, under 64 MiB):
#   bin/     ternd, tern, tern-mkmodel and the benchmarks, stripped
#   tests/   the test binaries that hold GPU tests, stripped
#   lib/     the non-CUDA shared libraries they load (gRPC, protobuf, Abseil, OpenBLAS, ...)
#   fuzz/    with TERN_BUNDLE_FUZZ=1, the libFuzzer targets of BUILD/fuzz (fuzz/README.md, "Long
#            runs"; the host's many cores run them while the GPU works)
#   (the folders travel as bundle.tar.xz; run.sh unpacks it on first use)
#   CTestTestfile.cmake   the build's test list with bundle-relative paths
#   run.sh   sets LD_LIBRARY_PATH; `run.sh ctest -L gpu`, `run.sh bin/ternd ...`
# The GPU machine supplies libcudart and libcublas itself.
set -euo pipefail
shopt -s nullglob
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-device"
out="$root/.device-bundle"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_CUDA=ON \
  -DTERN_CUDA_ARCHITECTURES=90a >/dev/null
# TERN_BUNDLE_TARGETS builds only those targets (a quicker bundle for one check).
if [[ -n "${TERN_BUNDLE_TARGETS:-}" ]]; then
  # shellcheck disable=SC2086
  cmake --build "$build" -j "$(nproc)" --target $TERN_BUNDLE_TARGETS
else
  cmake --build "$build" -j "$(nproc)"
fi

rm -rf "$out"
mkdir -p "$out/bin" "$out/tests" "$out/lib" "$out/fuzz"
# TERN_BUNDLE_BINARIES picks the executables (default: all); fewer executables
# mean fewer libraries, for trees that leave little of the 64 MiB carry.
for f in "$build"/bin/*; do
  [[ -x "$f" && -f "$f" ]] || continue
  name=$(basename "$f")
  if [[ -n "${TERN_BUNDLE_BINARIES:-}" && " $TERN_BUNDLE_BINARIES " != *" $name "* ]]; then continue; fi
  strip --strip-all -o "$out/bin/$name" "$f"
done
# Only test binaries with GPU tests travel: the rest run on the build machine, and the carry is
# limited to 64 MiB.
gpu_tests=$(cd "$build" && ctest -L gpu --show-only=json-v1 |
  python3 -c 'import json,sys,os; print("\n".join(sorted({os.path.basename(t["command"][0]) for t in json.load(sys.stdin)["tests"] if t.get("command")})))')
# TERN_BUNDLE_TESTS=0 leaves them out (for runs of the executables alone).
if [[ "${TERN_BUNDLE_TESTS:-1}" != 0 ]]; then
  for name in $gpu_tests; do
    if [[ -n "${TERN_BUNDLE_TARGETS:-}" && " $TERN_BUNDLE_TARGETS " != *" $name "* ]]; then continue; fi
    [[ -f "$build/tests/$name" ]] && strip --strip-all -o "$out/tests/$name" "$build/tests/$name"
  done
fi

if [[ "${TERN_BUNDLE_FUZZ:-0}" == 1 ]]; then
  for f in "$build"/fuzz/*_fuzzer; do
    strip --strip-all -o "$out/fuzz/$(basename "$f")" "$f"
  done
fi

# The LD_PRELOAD kernel tracer (tools/trace), when built.
[[ -f "$build/lib/libtern-kernel-trace.so" ]] && strip --strip-unneeded -o "$out/lib/libtern-kernel-trace.so" \
  "$build/lib/libtern-kernel-trace.so"

# Shared libraries, minus what the GPU machine's own image provides: the C
# library family and the CUDA libraries.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libcuda\.so|libcudart|libcublas|libnvidia)'
for f in "$out"/bin/* "$out"/tests/* "$out"/fuzz/*; do
  ldd "$f" 2>/dev/null | awk '/=> \//{print $1" "$3}'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $skip ]] && continue
  [[ -f "$out/lib/$name" ]] || cp -L "$path" "$out/lib/$name"
done
strip --strip-unneeded "$out"/lib/*.so* 2>/dev/null || true

# The test list (the GPU tests), with this machine's paths made relative to the bundle.
python3 - "$build" "$out" <<'PY'
import json, subprocess, sys, os
build, out = sys.argv[1], sys.argv[2]
info = json.loads(subprocess.check_output(["ctest", "-L", "gpu", "--show-only=json-v1"], cwd=build))
lines = []
for test in info["tests"]:
    cmd = test.get("command")
    if not cmd:
        continue
    exe = os.path.basename(cmd[0])
    if os.path.dirname(cmd[0]) == os.path.join(build, "tests"):
        cmd = ["tests/" + exe] + cmd[1:]
    elif os.path.dirname(cmd[0]) == os.path.join(build, "bin"):
        cmd = ["bin/" + exe] + cmd[1:]
    else:
        continue  # tests that need this machine's tools (python client) stay here
    if not os.path.exists(os.path.join(out, cmd[0])):
        continue  # not bundled (TERN_BUNDLE_TESTS=0 or TERN_BUNDLE_TARGETS)
    props = {p["name"]: p["value"] for p in test.get("properties", [])}
    labels = props.get("LABELS", [])
    def q(text):
        return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
    name = q(test["name"])
    lines.append("add_test(%s %s)" % (name, " ".join(q(a) for a in cmd)))
    if labels:
        lines.append('set_tests_properties(%s PROPERTIES LABELS "%s" SKIP_REGULAR_EXPRESSION "\\\\[  SKIPPED \\\\]")'
                     % (name, ";".join(labels)))
    if props.get("RUN_SERIAL"):
        lines.append("set_tests_properties(%s PROPERTIES RUN_SERIAL TRUE)" % name)  # takes the whole card
with open(os.path.join(out, "CTestTestfile.cmake"), "w") as f:
    f.write("\n".join(lines) + "\n")
PY
# Libraries, executables and tests travel xz-compressed (OpenBLAS alone is 36 MB, 4 MB packed);
# run.sh unpacks them on first use.
XZ_OPT=${XZ_OPT:--9e -T0} tar -C "$out" -cJf "$out/bundle.tar.xz" lib bin tests fuzz
rm -rf "$out/lib" "$out/bin" "$out/tests" "$out/fuzz"
cp "$root/tools/device/run.sh" "$out/run.sh"
chmod +x "$out/run.sh"
du -sh "$out"
