#!/usr/bin/env bash
# The Dockerfile's build stage ends here: copies the executables (stripped)
# into DEST/bin and works out what they need at run time from their dynamic
# libraries: a library that a Debian package owns adds that package to
# DEST/runtime-packages (the final stage installs exactly those), one that no
# package owns (the CUDA runtime and cuBLAS under /usr/local/cuda) is copied
# into DEST/lib. The driver library (libcuda.so.1) is the host's and is not
# looked for.
#
#   tools/container/stage_runtime.sh DEST EXECUTABLE...
set -euo pipefail

dest=$1
shift
mkdir -p "$dest/bin" "$dest/lib"
: >"$dest/runtime-packages.tmp"

owner_package() {
  local lib=$1 candidate
  # With merged /usr, ld.so reports /lib/... while dpkg records /usr/lib/... (or the reverse).
  for candidate in "$lib" "/usr$lib" "${lib#/usr}" "$(readlink -f "$lib")"; do
    dpkg-query -S "$candidate" 2>/dev/null | head -1 | cut -d: -f1 && return 0
  done
  return 1
}

for exe in "$@"; do
  install -m 0755 -s "$exe" "$dest/bin/"
  while read -r name arrow path _; do
    [[ "$arrow" == "=>" ]] || continue
    if [[ "$path" == "not" ]]; then
      [[ "$name" == libcuda.so.* ]] && continue
      echo "stage_runtime: $exe needs $name, which the build stage cannot find" >&2
      exit 1
    fi
    if package=$(owner_package "$path"); then
      echo "$package" >>"$dest/runtime-packages.tmp"
    else
      cp -L -n "$path" "$dest/lib/"
    fi
  done < <(ldd "$exe")
done
sort -u "$dest/runtime-packages.tmp" >"$dest/runtime-packages"
rm "$dest/runtime-packages.tmp"
echo "runtime packages: $(tr '\n' ' ' <"$dest/runtime-packages")"
echo "bundled libraries: $(ls "$dest/lib" | tr '\n' ' ')"
