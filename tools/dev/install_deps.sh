#!/usr/bin/env bash
# Installs the Debian 12 packages tern builds and tests with, only those that
# are missing. Needs root or sudo. CUDA is not installed here: the build uses
# /usr/local/cuda when it exists and builds CPU-only otherwise.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev libspdlog-dev libfmt-dev prometheus-cpp-dev libboost-dev
  nlohmann-json3-dev libopenblas-dev libssl-dev libpng-dev
  libgtest-dev libgmock-dev
  prometheus python3 python3-grpcio python3-protobuf clang libclang-rt-14-dev yamllint
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
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
