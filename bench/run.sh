#!/usr/bin/env bash
# Runs every benchmark of issue 10: writes the results to bench/results.json
# and renders docs/PERFORMANCE.md from them.
#
#   sudo bench/run.sh            # full run, about 30 minutes
#   sudo bench/run.sh --short    # quick pass, about 6 minutes
#   sudo bench/run.sh --only scale --peers 5000 --keep   # one part, to profile
#   sudo bench/run.sh --only cni --json /tmp/cni.json    # one part, its JSON kept
#
# One part measured again, against an earlier build, and put into the
# recorded results (the report then says which run each part comes from):
#   sudo bench/run.sh --only kube-scale --baseline-bin-dir DIR \
#       --baseline-label "before (abc1234)" --json /tmp/kube.json
#   target/release/weft-bench merge /tmp/kube.json
# where DIR holds the earlier commit's release weftd and weft-kube-testserver.
#
# Real flannel beside weft, in the same run (the issue's goals are same-run
# ratios), for anyone with a flanneld binary:
#   sudo bench/run.sh --flanneld /path/to/flanneld
# flanneld then runs (flanneld's flags only, etcd store) on the scale lab's
# node alternating with weftd — cold start, new lease → route, RSS at K = 0
# and each K >= 5 000 (--short: the largest K) — and as the agents of a
# second vxlan lab for pod → pod ÷ underlay; the report puts flannel next
# to weft with weft ÷ flannel. Without --flanneld it says "flannel: not
# measured". flanneld needs iptables and the br_netfilter module
# (`modprobe br_netfilter`; the benchmark does not load it). The path is
# checked before anything is built.
#
# It builds the workspace in release mode (benchmarks of a debug build mean
# little), then runs `weft-bench run` from that build with the labs pointed
# at the same binaries. Every argument is passed to `weft-bench run` (see
# `weft-bench run --help`). Needs root (network namespaces); installs
# iperf3, etcd, wireguard-go, wg and the reference CNI plugins if they are
# missing (scripts/install-deps.sh).
#
# docs/PERFORMANCE.md can be rendered again from a kept JSON without
# measuring anything (no root, any build):
#   cargo run -p weft-bench -- render [bench/results.json] [--out FILE]
#
# CARGO_TARGET_DIR chooses where the release build goes (default: target/
# in the repository).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"

if [[ $(id -u) -ne 0 ]]; then
    echo "bench/run.sh needs root (it builds network namespaces): run it with sudo" >&2
    exit 1
fi

# --flanneld PATH: checked now, not after a long build (weft-bench checks
# it again).
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    flanneld=""
    case "${args[i]}" in
        --flanneld) flanneld="${args[i + 1]:-}" ;;
        --flanneld=*) flanneld="${args[i]#--flanneld=}" ;;
        *) continue ;;
    esac
    if [[ -z "$flanneld" ]]; then
        echo "bench/run.sh: --flanneld needs the path of a flanneld binary" >&2
        exit 1
    elif [[ ! -f "$flanneld" ]]; then
        echo "bench/run.sh: --flanneld $flanneld: no such file (pass the path of a flanneld binary)" >&2
        exit 1
    elif [[ ! -x "$flanneld" ]]; then
        echo "bench/run.sh: --flanneld $flanneld: not executable (chmod +x it)" >&2
        exit 1
    fi
done

# What the benchmarks drive (iperf3, etcd, wireguard-go, wg, the CNI
# plugins): installed if missing, as the test suite does. Its messages go
# to stderr, so that `--out -` and `--json -` give nothing but the report.
"$repo/scripts/install-deps.sh" >&2

echo "building the workspace in release mode into $target ..." >&2
(cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --workspace --quiet)

cd "$repo"
exec "$target/release/weft-bench" run --bin-dir "$target/release" "$@"
