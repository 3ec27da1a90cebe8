#!/bin/sh
# Runs the given command (weftd) with the iptables backend the host uses.
#
# The image has both iptables backends. Rules written with one are
# invisible to the other, so weft must use the one kube-proxy and the
# kubelet already use on this host, as flannel's image does with
# kubernetes-sigs' iptables-wrapper. IPTABLES_MODE=legacy|nft forces it;
# otherwise the backend already holding more rules wins (nft on a tie).
set -eu

mode="${IPTABLES_MODE:-}"
if [ -z "$mode" ]; then
    count() { { "$1-save" 2>/dev/null || true; "$2-save" 2>/dev/null || true; } | grep -c '^-' || true; }
    legacy=$(count iptables-legacy ip6tables-legacy)
    nft=$(count iptables-nft ip6tables-nft)
    if [ "$legacy" -gt "$nft" ]; then mode=legacy; else mode=nft; fi
fi
case "$mode" in
    legacy | nft) ;;
    *) echo "iptables-select: IPTABLES_MODE must be legacy or nft, not '$mode'" >&2; exit 2 ;;
esac
for tool in iptables ip6tables; do
    update-alternatives --set "$tool" "/usr/sbin/$tool-$mode" >/dev/null
done
echo "iptables-select: using the $mode iptables backend" >&2
exec "$@"
