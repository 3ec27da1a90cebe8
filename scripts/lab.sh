#!/usr/bin/env bash
# Brings up a weft lab on this machine: installs what is missing, builds,
# starts N nodes (network namespaces) with one weftd each and pods made
# through the CNI plugin, then checks that every pod reaches every other.
# Arguments are passed to `weft lab up` (e.g. --name demo --backend host-gw
# --nodes 4); the check and the hints below are for that same lab.
# Needs root. Touches nothing outside the namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."

# The lab's name, as `weft lab up` reads it: --name X or --name=X (the last
# one wins), else its default. The value of --agent-arg is weftd's, even
# when it looks like a flag (--agent-arg --name=x names no lab).
name=weft
help=false
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -h | --help) help=true ;;
    --name)
      if ((i + 1 < ${#args[@]})); then
        name=${args[i + 1]}
      fi
      i=$((i + 1))
      ;;
    --name=*) name=${args[i]#--name=} ;;
    --agent-arg) i=$((i + 1)) ;;
  esac
done
# `weft lab` spells the default lab without a flag.
name_args=()
flag=""
if [[ "$name" != weft ]]; then
  name_args=(--name "$name")
  flag=" --name $name"
fi

scripts/install-deps.sh
cargo build --workspace --locked
weft="${CARGO_TARGET_DIR:-target}/debug/weft"
if $help; then
  exec "$weft" lab up --help
fi

"$weft" lab up "$@"
"$weft" lab check "${name_args[@]}"

hint() { printf '  %-*s   # %s\n' "$width" "$1" "$2"; }
width=$((${#weft} + ${#flag} + 37))
echo
echo "The lab $name is up. Look around:"
hint "$weft lab exec$flag node1 -- ip route" "routes weft programmed"
hint "$weft lab exec$flag node1 -- bridge fdb show" "vxlan FDB entries"
hint "$weft lab exec$flag node1-pod1 -- ping -c1 <IP>" "<IP>: another pod's address"
hint "$weft lab restart$flag node2" "restart one agent"
hint "cat /run/weft-lab/$name/node1/weftd.log" "an agent's log"
echo "Tear it down:"
hint "$weft lab down$flag" "remove everything"
