#!/usr/bin/env bash
# Builds tern for sm_90a (H100/H200) and packs what the GPU machine needs to
# run it into .device-bundle/ (git-ignored, under 64 MiB):
#   bin/     ternd, tern, tern-mkmodel and the benchmarks, stripped
#   tests/   every test binary, stripped
#   lib/     the non-CUDA shared libraries they load (gRPC, protobuf, Abseil, ...)
#   CTestTestfile.cmake   the build's test list with bundle-relative paths
#   run.sh   sets LD_LIBRARY_PATH; `run.sh ctest -L gpu`, `run.sh bin/ternd ...`
# The GPU machine supplies libcudart and libcublas itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-device"
out="$root/.device-bundle"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_CUDA=ON \
  -DTERN_CUDA_ARCHITECTURES=90a >/dev/null
cmake --build "$build" -j "$(nproc)"

rm -rf "$out"
mkdir -p "$out/bin" "$out/tests" "$out/lib"
for f in "$build"/bin/*; do [[ -x "$f" && -f "$f" ]] && strip --strip-debug -o "$out/bin/$(basename "$f")" "$f"; done
for f in "$build"/tests/*; do [[ -x "$f" && -f "$f" ]] && strip --strip-debug -o "$out/tests/$(basename "$f")" "$f"; done

# Shared libraries, minus what the GPU machine's own image provides: the C
# library family and the CUDA libraries.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libcuda\.so|libcudart|libcublas|libnvidia)'
for f in "$out"/bin/* "$out"/tests/*; do
  ldd "$f" 2>/dev/null | awk '/=> \//{print $1" "$3}'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $skip ]] && continue
  [[ -f "$out/lib/$name" ]] || cp -L "$path" "$out/lib/$name"
done
strip --strip-debug "$out"/lib/*.so* 2>/dev/null || true

# The test list, with this machine's paths made relative to the bundle.
python3 - "$build" "$out" <<'PY'
import json, subprocess, sys, os
build, out = sys.argv[1], sys.argv[2]
info = json.loads(subprocess.check_output(["ctest", "--show-only=json-v1"], cwd=build))
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
    props = {p["name"]: p["value"] for p in test.get("properties", [])}
    labels = props.get("LABELS", [])
    quoted = " ".join('"%s"' % a.replace('"', '\\"') for a in cmd)
    lines.append('add_test("%s" %s)' % (test["name"], quoted))
    if labels:
        lines.append('set_tests_properties("%s" PROPERTIES LABELS "%s" SKIP_REGULAR_EXPRESSION "\\\\[  SKIPPED \\\\]")'
                     % (test["name"], ";".join(labels)))
with open(os.path.join(out, "CTestTestfile.cmake"), "w") as f:
    f.write("\n".join(lines) + "\n")
PY
cp "$root/tools/device/run.sh" "$out/run.sh"
chmod +x "$out/run.sh"
du -sh "$out"
