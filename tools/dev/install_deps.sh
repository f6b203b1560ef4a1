#!/usr/bin/env bash
# Installs the Debian 12 packages tern builds and tests with, only those that
# are missing. Needs root or sudo. CUDA is not installed here: the build uses
# /usr/local/cuda when it exists and builds CPU-only otherwise.
#
# Then, where npm is on the machine, the official OpenAI Node client (npm
# package `openai`, pinned below) that tests/e2e/openai_e2e_test.cc drives
# ternd's OpenAI-compatible API with: fetched by name with `npm pack`, its
# integrity checked, unpacked into .node/node_modules/openai (git-ignored).
# It has no dependencies and nothing to build; no install script runs. Without
# node or npm, or offline, the step says so and the test skips.
#
#   install_deps.sh              what `make build` and `make test` need
#   install_deps.sh --build      only what compiling ternd and tern needs (the Dockerfile's build stage)
#   install_deps.sh --container  also buildah, runc and debootstrap, which tools/container/ builds and
#                                runs the image with (the `container` ctest)
set -euo pipefail

mode=default
case "${1:-}" in
  "") ;;
  --build) mode=build ;;
  --container) mode=container ;;
  *) echo "usage: install_deps.sh [--build | --container]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
openai_node_version=6.49.0
openai_node_integrity=sha512-aYCc0C6L864eR6WSYIwQGyXriw/nIyZx0ObvhzOEVuk0zoBDpynjSbrionWI7q65B5H8jJX0DXR9snEzM6bfPg==

install_openai_node() {
  local dest="$root/.node/node_modules/openai"
  if [[ -f "$dest/package.json" ]] && grep -q "\"version\": \"$openai_node_version\"" "$dest/package.json"; then
    return 0
  fi
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "node/npm not found: the OpenAI Node client test (openai_e2e_test) will skip"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && npm pack --silent "openai@$openai_node_version" >/dev/null 2>&1); then
    echo "npm pack openai@$openai_node_version failed (offline?): the OpenAI Node client test will skip" >&2
    rm -rf "$tmp"
    return 0
  fi
  local tarball="$tmp/openai-$openai_node_version.tgz"
  local integrity
  integrity="sha512-$(python3 -c 'import base64, hashlib, sys
print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tarball")"
  if [[ "$integrity" != "$openai_node_integrity" ]]; then
    echo "openai@$openai_node_version: integrity $integrity is not the pinned $openai_node_integrity" >&2
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$dest" "$dest.partial"
  mkdir -p "$dest.partial"
  tar -xzf "$tarball" -C "$dest.partial" --strip-components=1 --no-same-owner
  mv "$dest.partial" "$dest"
  rm -rf "$tmp"
  echo "installed the OpenAI Node client openai@$openai_node_version into .node/node_modules"
}

build_packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev libspdlog-dev libfmt-dev prometheus-cpp-dev libboost-dev
  nlohmann-json3-dev libopenblas-dev libssl-dev libpng-dev
)
test_packages=(
  libgtest-dev libgmock-dev
  prometheus python3 python3-grpcio python3-protobuf clang libclang-rt-14-dev yamllint curl
)
# Rootful buildah on Debian 12 uses overlay storage and runc; uidmap, fuse-overlayfs
# and slirp4netns are what it needs to build as an ordinary user too.
container_packages=(buildah runc debootstrap uidmap fuse-overlayfs slirp4netns)

packages=("${build_packages[@]}")
[[ "$mode" == build ]] || packages+=("${test_packages[@]}")
[[ "$mode" == container ]] && packages+=("${container_packages[@]}")

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  [[ "$mode" == build ]] || install_openai_node
  exit 0
fi

echo "installing: ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
[[ "$mode" == build ]] || install_openai_node
