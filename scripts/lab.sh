#!/usr/bin/env bash
# Brings up a weft lab on this machine: installs what is missing, builds,
# starts N nodes (network namespaces) with one weftd each and pods made
# through the CNI plugin, then checks that every pod reaches every other.
# Arguments are passed to `weft lab up` (e.g. --backend host-gw --nodes 4).
# Needs root. Touches nothing outside the namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --workspace --locked
weft=target/debug/weft

"$weft" lab up "$@"
"$weft" lab check

cat <<'TXT'

The lab is up. Look around:
  target/debug/weft lab exec node1 -- ip route         # routes weft programmed
  target/debug/weft lab exec node1 -- bridge fdb show   # vxlan FDB entries
  target/debug/weft lab exec node1-pod1 -- ping -c1 <another pod's IP>
  target/debug/weft lab restart node2                   # restart one agent
  cat /run/weft-lab/weft/node1/weftd.log                # an agent's log
Tear it down:
  target/debug/weft lab down
TXT
