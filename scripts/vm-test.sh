#!/usr/bin/env bash
# The kernel-path tests: crates/weft/tests/vm_kernel.rs run inside a VM
# booted with Debian's stock kernel (scripts/vm.sh), because the host's
# kernel lacks the wireguard and ipip modules that users' kernels have.
#
# Usage: scripts/vm-test.sh [FILTER]
#   FILTER          run only the tests whose name contains it
#   VM_TEST_REPEAT  run the selected tests this many times (default 1), in
#                   one boot; the WireGuard labs race at set-up, so repeats
#                   are how a rare failure is caught
#
# Exit status 0 only when every test passed in every round. A VM that does
# not boot, or a guest that never reports, fails: nothing passes vacuously.
set -euo pipefail
cd "$(dirname "$0")/.."

filter="${1:-}"
repeat="${VM_TEST_REPEAT:-1}"
if ! [[ "$repeat" =~ ^[1-9][0-9]*$ ]]; then
  echo "vm-test: VM_TEST_REPEAT must be a positive number, not '$repeat'" >&2
  exit 2
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "vm-test: needs root (it boots a VM whose tests build network namespaces)" >&2
  exit 1
fi

echo "vm-test: building the binaries the labs run and the test binary"
cargo build --workspace --locked --quiet
bin=$(cargo test -p weft --test vm_kernel --no-run --locked --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "vm_kernel" and m.get("executable"):
        print(m["executable"])
')
if [[ -z "$bin" || ! -x "$bin" ]]; then
  echo "vm-test: could not find the vm_kernel test binary" >&2
  exit 1
fi

mapfile -t tests < <("$bin" --list --ignored --format terse | sed -n 's/: test$//p' | grep -F -- "$filter" || true)
if [[ ${#tests[@]} -eq 0 ]]; then
  echo "vm-test: no test matches '$filter'" >&2
  exit 1
fi

results=$(mktemp -d /tmp/weft-vm-test.XXXXXX)
trap 'rm -rf "$results"' EXIT

# The guest runs each test on its own (one lab at a time: the VM has two
# emulated CPUs), goes on after a failure, and writes one line per run to
# the results directory, the only place the host can read back.
guest=$(cat <<'EOF'
set -u
bin=$1; repeat=$2; out=$3; shift 3
for round in $(seq 1 "$repeat"); do
  for t in "$@"; do
    start=$(date +%s)
    if "$bin" --ignored --exact "$t" --test-threads=1 >"$out/log.$round.$t" 2>&1; then r=pass; else r=FAIL; fi
    echo "$round $t $r $(( $(date +%s) - start ))s" | tee -a "$out/results"
  done
done
echo done >"$out/finished"
EOF
)

echo "vm-test: ${#tests[@]} test(s) x $repeat round(s) in the Debian-kernel VM"
start=$(date +%s)
set +e
scripts/vm.sh --rwdir "$results" -- bash -c "$guest" guest "$bin" "$repeat" "$results" "${tests[@]}"
vm_status=$?
set -e
echo "vm-test: the VM ran for $(( $(date +%s) - start )) s (exit status $vm_status)"

if [[ ! -f "$results/finished" ]]; then
  echo "vm-test: FAILED: the guest did not finish its tests (VM exit status $vm_status)" >&2
  exit 1
fi
failed=$(grep -c ' FAIL ' "$results/results" || true)
for log in "$results"/log.*; do
  t=${log#"$results"/log.}
  if grep -q " ${t#*.} FAIL " <(grep "^${t%%.*} " "$results/results"); then
    echo "---- round ${t%%.*}: ${t#*.} failed:"
    tail -n 60 "$log"
  fi
done
runs=$(wc -l <"$results/results")
echo "vm-test: $(( runs - failed )) of $runs run(s) passed"
[[ "$failed" -eq 0 ]]
