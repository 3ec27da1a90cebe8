#!/usr/bin/env bash
# Builds weft's container image, localhost/weft:dev by default, with podman
# and no daemon, no container registry and no network inside the build:
#
#   1. a base image made from Debian's packages (mmdebstrap, then
#      `podman import`), holding everything deploy/Dockerfile's final stage
#      installs, so that stage's install step finds nothing missing;
#   2. deploy/Dockerfile built on it with BASE=<that base> and
#      BINARIES=prebuilt: the weftd, flannel and weft binaries cargo built
#      on this host (release or debug) are copied in, not compiled again.
#
#   scripts/image.sh [--profile release|debug] [--tag IMAGE] [--rebuild-base]
#
# Every podman call runs with --network none: podman's default network
# would create a cni-podman0 bridge and CNI-* iptables chains in the
# host's root namespace. Runs as root. The base is rebuilt only when its
# package list changes (its tag carries a hash of the list) or with
# --rebuild-base; older weft bases and dangling layers are removed, so the
# host keeps one base and one weft image.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
tag=localhost/weft:dev
rebuild_base=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --rebuild-base) rebuild_base=true; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release | debug) ;;
  *) echo "image.sh: --profile is release or debug, not $profile" >&2; exit 2 ;;
esac
for tool in podman mmdebstrap runc; do
  command -v "$tool" >/dev/null || {
    echo "image.sh: $tool is missing: run scripts/install-deps.sh (Debian: podman buildah runc mmdebstrap)" >&2
    exit 1
  }
done

# The same list as deploy/Dockerfile's final stage: iptables (both
# backends), nft, CA certificates for etcd over TLS, and strongSwan's
# charon for an ipsec backend.
base_packages=(iptables nftables ca-certificates strongswan-charon strongswan-swanctl libstrongswan-standard-plugins)

work=$(mktemp -d /tmp/weft-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Debian's default ulimits cannot be applied in this sandbox ("error
# setting rlimits"), and crun fails on its cgroup layout: runc, no
# default ulimits. A caller's own CONTAINERS_CONF wins.
if [[ -z "${CONTAINERS_CONF:-}" ]]; then
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
fi

list_hash=$(printf '%s\n' bookworm "${base_packages[@]}" | sha256sum | cut -c1-12)
base="localhost/weft-base:bookworm-$list_hash"
if $rebuild_base || ! podman image exists "$base"; then
  echo "image.sh: building the base $base from Debian packages (${base_packages[*]})"
  start=$SECONDS
  includes=$(IFS=,; echo "${base_packages[*]}")
  mmdebstrap --quiet --variant=minbase --include="$includes" bookworm "$work/base.tar"
  podman import --quiet "$work/base.tar" "$base" >/dev/null
  rm -f "$work/base.tar"
  echo "image.sh: base built in $((SECONDS - start)) s"
fi
# One base: older weft bases (another package list) go.
podman images --format '{{.Repository}}:{{.Tag}}' \
  | grep '^localhost/weft-base:' | grep -vxF "$base" \
  | xargs -r podman rmi --force >/dev/null || true

for bin in weftd flannel weft; do
  if [[ ! -x "target/$profile/$bin" ]]; then
    flag=""; [[ $profile == release ]] && flag=" --release"
    echo "image.sh: target/$profile/$bin is missing: run \`cargo build$flag -p weftd -p weft-cni -p weft\` first" >&2
    exit 1
  fi
done

# A small build context: the repository's layout, only the files the
# prebuilt path reads (the whole target/ would be gigabytes).
ctx="$work/context"
mkdir -p "$ctx/deploy" "$ctx/target/$profile"
cp deploy/iptables-select.sh "$ctx/deploy/"
cp "target/$profile/weftd" "target/$profile/flannel" "target/$profile/weft" "$ctx/target/$profile/"

echo "image.sh: building $tag (deploy/Dockerfile, BASE=$base, $profile binaries)"
start=$SECONDS
podman build --quiet --network none --runtime runc \
  --build-arg BASE="$base" --build-arg BINARIES=prebuilt --build-arg PROFILE="$profile" \
  -f deploy/Dockerfile -t "$tag" "$ctx" >/dev/null
echo "image.sh: $tag built in $((SECONDS - start)) s"
# The layers the previous build of the tag left behind.
podman image prune --force >/dev/null
