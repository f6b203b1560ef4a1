#!/usr/bin/env bash
# Makes the Debian 12 (bookworm) base image the Dockerfile builds on, without
# pulling from any container registry: debootstrap --variant=minbase from the
# Debian mirror that this machine's apt sources already name, imported into
# buildah's local storage.
#
#   tools/container/make_base_image.sh [IMAGE]     (default: localhost/tern-base:bookworm)
#
# The image's /etc/apt/sources.list names the same mirror (and its bookworm
# -updates and -security suites when the sources have them), so `apt-get
# install` works in the Dockerfile's stages. Needs root, debootstrap and
# buildah (tools/dev/install_deps.sh --container). Takes a minute or two.
set -euo pipefail

image=${1:-localhost/tern-base:bookworm}
suite=bookworm

for tool in debootstrap buildah apt-get; do
  command -v "$tool" >/dev/null || { echo "make_base_image: $tool not found (tools/dev/install_deps.sh --container)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "make_base_image: debootstrap needs root" >&2; exit 1; }

# The mirror: the repository that apt's sources name for "$suite main", read
# through apt itself so that one-line (.list) and deb822 (.sources) files both count.
repos=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' 'Component: main' | sort -u)
mirror=$(awk -v s="$suite" '$2 == s {print $1; exit}' <<<"$repos")
if [[ -z "$mirror" ]]; then
  echo "make_base_image: no apt source names '$suite main' (run apt-get update, or add one to /etc/apt/sources.list.d)" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/tern-base.XXXXXX)
ctr=
cleanup() {
  [[ -n "$ctr" ]] && buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

rootfs="$work/rootfs"
echo "debootstrap $suite (minbase) from $mirror"
debootstrap --variant=minbase --include=ca-certificates "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}

# apt sources inside the image: every $suite* suite the host's sources name on main.
awk -v s="$suite" '$2 ~ "^" s "(-|$)" {print "deb " $1 " " $2 " main"}' <<<"$repos" >"$rootfs/etc/apt/sources.list"
# As Debian's own container images do: no recommends, no caches or docs left in layers.
cat >"$rootfs/etc/apt/apt.conf.d/90tern-container" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Acquire::GzipIndexes "true";
CONF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90tern-container" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CONF
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/var/log/* "$rootfs"/usr/share/doc/*/changelog* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"

ctr=$(buildah from scratch)
mnt=$(buildah mount "$ctr")
tar -C "$rootfs" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf -
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd /bin/bash \
  --label org.opencontainers.image.description="Debian $suite minbase (debootstrap)" "$ctr"
buildah commit --quiet --rm "$ctr" "$image" >/dev/null
ctr=
echo "made $image: $(buildah images --format '{{.Size}}' "$image")"
