#!/usr/bin/env bash
# Builds the tern image with buildah (Dockerfile, CPU-only unless TERN_CUDA=ON is
# given) and serves the demo LLM from it: runc runs the image's entrypoint as
# the image's user on a read-only root with no capabilities, on the host's
# network, with models/ mounted read-only at /models; the image's HEALTHCHECK
# command and `tern generate` run inside that container (runc exec), curl
# calls the OpenAI HTTP API (/v1/models, /v1/chat/completions) and /metrics,
# and SIGTERM (runc kill) must end ternd with status 0. It also checks that
# the image holds no compiler or headers and runs as a non-root user.
#
#   tools/container/build_and_smoke.sh [--when-enabled] [--no-build] [IMAGE]
#
# IMAGE defaults to localhost/tern:smoke. --no-build uses the image as it is.
# --when-enabled (the `container_smoke` ctest) skips unless TERN_CONTAINER_TEST=1.
#
# Environment: JOBS (compile jobs in the build stage, default 2), TERN_CUDA
# (default OFF), TERN_CONTAINER_LOG (where the build log goes, default a file in
# the temp dir). Makes the base image first (make_base_image.sh) when absent.
# Needs root (rootful buildah, overlay storage, runc) and the network path to
# the Debian mirror the apt sources name. Exits 77 where buildah cannot run.
# A CPU-only build compiles ternd and tern in the container: about 30 minutes
# on 2 cores, seconds when its layers are cached.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=1
when_enabled=0
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --no-build) build=0 ;;
    --when-enabled) when_enabled=1 ;;
    *) echo "usage: build_and_smoke.sh [--when-enabled] [--no-build] [IMAGE]" >&2; exit 2 ;;
  esac
  shift
done
image=${1:-localhost/tern:smoke}
base_image=localhost/tern-base:bookworm
jobs=${JOBS:-2}
tern_cuda=${TERN_CUDA:-OFF}
model=tern-demo-llm

skip() { echo "SKIP: $*"; exit 77; }
if ((when_enabled)) && [[ "${TERN_CONTAINER_TEST:-}" != 1 ]]; then
  skip "set TERN_CONTAINER_TEST=1 to build the image (about 30 minutes on 2 cores) and serve from it"
fi
command -v buildah >/dev/null || skip "buildah is not installed (tools/dev/install_deps.sh --container)"
command -v runc >/dev/null || skip "runc is not installed (tools/dev/install_deps.sh --container)"
command -v curl >/dev/null || skip "curl is not installed"
command -v python3 >/dev/null || skip "python3 is not installed"
[[ $(id -u) -eq 0 ]] || skip "this script drives rootful buildah; run it as root"
buildah info >/dev/null 2>&1 || skip "buildah cannot reach its storage: $(buildah info 2>&1 | tail -1)"

work=$(mktemp -d /var/tmp/tern-smoke.XXXXXX)
ctr=
ternd_pid=
name=
cleanup() {
  if [[ -n "$name" ]]; then
    runc kill "$name" KILL >/dev/null 2>&1 || true
    [[ -n "$ternd_pid" ]] && wait "$ternd_pid" 2>/dev/null
    runc delete --force "$name" >/dev/null 2>&1 || true
  fi
  [[ -n "$ctr" ]] && { buildah umount "$ctr" >/dev/null 2>&1; buildah rm "$ctr" >/dev/null 2>&1; } || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [[ -f "$work/ternd.log" ]] && { echo "--- ternd log (last 30 lines)" >&2; tail -30 "$work/ternd.log" >&2; }
  exit 1
}

if ((build)); then
  if ! buildah images --quiet "$base_image" >/dev/null 2>&1; then
    "$root/tools/container/make_base_image.sh" "$base_image"
  fi
  log=${TERN_CONTAINER_LOG:-$work/build.log}
  echo "building $image (TERN_CUDA=$tern_cuda, $jobs jobs); log: $log"
  start=$(date +%s)
  # --format docker keeps HEALTHCHECK; --layers caches each step for the next build.
  if ! buildah build --format docker --layers --pull=false -f "$root/Dockerfile" -t "$image" \
      --build-arg BASE_IMAGE="$base_image" --build-arg TERN_CUDA="$tern_cuda" \
      --build-arg JOBS="$jobs" \
      --build-arg TERN_GIT_SHA="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
      "$root" >"$log" 2>&1; then
    tail -40 "$log" >&2
    fail "buildah build failed (log: $log)"
  fi
  echo "built $image in $(( $(date +%s) - start )) s"
fi
buildah images --quiet "$image" >/dev/null 2>&1 || fail "no image $image (build it first)"
size=$(buildah images --format '{{.Size}}' "$image" | head -1)
echo "image $image: $size"

# The image's configuration: a non-root user, ternd as the entrypoint, a healthcheck.
image_config=$(buildah inspect --type image "$image" | python3 -c 'import json, sys
print(json.dumps(json.load(sys.stdin)["Docker"]["config"]))')
config() { python3 -c "import json, sys; c = json.loads(sys.argv[1]); print($1)" "$image_config"; }
user=$(config 'c.get("User") or ""')
entrypoint=$(config 'json.dumps(c.get("Entrypoint"))')
[[ -n "$user" && "${user%%:*}" != 0 && "${user%%:*}" != root ]] || fail "the image runs as '$user', not as a non-root user"
[[ "$entrypoint" == '["ternd"]' ]] || fail "entrypoint is $entrypoint, not [\"ternd\"]"
health_cmd=$(config '"\n".join((c.get("Healthcheck") or {}).get("Test", [])[1:]) if ((c.get("Healthcheck") or {}).get("Test") or [""])[0] == "CMD" else ""')
[[ -n "$health_cmd" ]] || fail "the image has no HEALTHCHECK CMD"
mapfile -t health_argv <<<"$health_cmd"
echo "user $user, entrypoint $entrypoint, healthcheck ${health_argv[*]}"

# ternd runs as the image says (entrypoint, user, environment, working directory) under runc,
# as a container engine would run it: read-only root, no capabilities, the host's network,
# models/ read-only at /models. The healthcheck and the CLI run inside it with `runc exec`,
# as an engine runs HEALTHCHECK, and SIGTERM goes to ternd through `runc kill`.
ctr=$(buildah from --pull=false "$image")
rootfs=$(buildah mount "$ctr")
ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
read -r grpc_port http_port <<<"$ports"
target=127.0.0.1:$grpc_port
bundle=$work/bundle
mkdir -p "$bundle"
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" "$rootfs" "$root/models" "$image_config" \
  "$model" "$grpc_port" "$http_port" <<'PY'
import json, sys
path, rootfs, models, image_config, model, grpc_port, http_port = sys.argv[1:]
spec = json.load(open(path))
image = json.loads(image_config)
uid, _, gid = image["User"].partition(":")
spec["root"] = {"path": rootfs, "readonly": True}
process = spec["process"]
process["terminal"] = False
process["user"] = {"uid": int(uid), "gid": int(gid or uid)}
process["args"] = image["Entrypoint"] + ["--model", f"/models/{model}", "--backend", "cpu", "--host", "127.0.0.1",
                                         "--grpc-port", grpc_port, "--http-port", http_port]
process["env"] = image.get("Env") or []
process["cwd"] = image.get("WorkingDir") or "/"
spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
spec["mounts"] += [
    {"destination": "/models", "type": "bind", "source": models, "options": ["rbind", "ro"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
]
json.dump(spec, open(path, "w"), indent=1)
PY
name=tern-smoke-$$
runc run --bundle "$bundle" "$name" >"$work/ternd.log" 2>&1 &
ternd_pid=$!
in_ctr() { runc exec "$name" "$@"; }

# The HEALTHCHECK itself decides when ternd is up.
started=$(date +%s)
until in_ctr env TERN_TARGET="$target" "${health_argv[@]}" >/dev/null 2>&1; do
  kill -0 "$ternd_pid" 2>/dev/null || fail "ternd exited before it served"
  (( $(date +%s) - started < 120 )) || fail "the healthcheck did not pass within 120 s"
  sleep 1
done
echo "healthcheck passed after $(( $(date +%s) - started )) s"

# Only runtime libraries: no compiler, no headers, no CMake; not root.
in_ctr sh -c '! command -v c++ && ! command -v cmake && ! test -d /usr/include/grpcpp' >/dev/null \
  || fail "the final stage holds build tools or headers"
[[ $(in_ctr id -u) != 0 ]] || fail "ternd's container runs as root"
version=$(in_ctr ternd --version) || fail "ternd --version failed"
echo "ternd --version: $version"

text=$(in_ctr tern --target "$target" generate -m "$model" --mode normal --temperature 0 \
  --max-tokens 12 "The history of") || fail "tern generate failed: $text"
[[ -n "${text//[[:space:]]/}" ]] || fail "tern generate returned no text"
echo "tern generate: $text"

models=$(curl -sS --fail-with-body "http://127.0.0.1:$http_port/v1/models") || fail "GET /v1/models: $models"
python3 -c 'import json, sys
ids = [m["id"] for m in json.loads(sys.argv[1])["data"]]
sys.exit(0 if sys.argv[2] in ids else f"/v1/models lists {ids}")' "$models" "$model" || fail "/v1/models"

chat=$(curl -sS --fail-with-body "http://127.0.0.1:$http_port/v1/chat/completions" \
  -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"max_tokens\": 12, \"temperature\": 0,
       \"messages\": [{\"role\": \"user\", \"content\": \"Tell me about tea.\"}]}") || fail "POST /v1/chat/completions: $chat"
python3 -c 'import json, sys
r = json.loads(sys.argv[1])
assert r["object"] == "chat.completion", r
assert r["usage"]["completion_tokens"] > 0, r
print("chat completion:", json.dumps(r["choices"][0]["message"]["content"]))' "$chat" || fail "chat completion: $chat"

metrics=$(curl -sS --fail-with-body "http://127.0.0.1:$http_port/metrics") || fail "GET /metrics"
grep -q "^tern_generation_tokens_total{.*model=\"$model\"" <<<"$metrics" \
  || fail "/metrics has no tern_generation_tokens_total for $model"

runc kill "$name" TERM
if wait "$ternd_pid"; then status=0; else status=$?; fi
ternd_pid=
[[ $status -eq 0 ]] || fail "ternd exited with status $status after SIGTERM"
echo "PASS: $image serves $model (runc, read-only root, uid ${user%%:*}; healthcheck, tern generate, /v1/models, /v1/chat/completions, /metrics; SIGTERM exit 0)"
