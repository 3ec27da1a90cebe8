#!/usr/bin/env bash
# Installs the Debian packages weft's build and tests need, only those that
# are missing. Safe to run repeatedly. Needs root (apt); without root it
# lists what is missing and exits non-zero.
set -euo pipefail

packages=(
  protobuf-compiler libprotobuf-dev  # protoc and its well-known types: build the etcd client
  iproute2 iputils-ping        # ip, bridge, ping: lab and netns tests
  ethtool                      # reads back the vxlan device's offloads
  etcd-server etcd-client      # a real etcd for the lease-store tests
  containernetworking-plugins  # bridge, host-local, loopback, portmap
  wireguard-tools wireguard-go # wg and an independent WireGuard peer
  nftables iptables            # read rules back in tests
  iperf3 tcpdump               # throughput and wire checks
  python3-venv                 # scripts/validate-manifests.sh's pinned validator
  podman buildah runc mmdebstrap  # scripts/image.sh and `weft lab up --image` (no daemon, no registry)
  python3-yaml                 # weft-lab's test that the lab's container settings are kube-weft.yml's
  strongswan-charon strongswan-swanctl libcharon-extra-plugins  # the ipsec backend: charon (VICI), swanctl for interop tests
  libstrongswan-standard-plugins  # openssl: the ecp256 group of the default ESP proposal (needed at the first rekey)
)

missing=()
for p in "${packages[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: not root; install these with apt-get first: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: wireguard-tools would otherwise pull a kernel image.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
