#!/usr/bin/env bash
# The kernel-path tests (crates/weft/tests/vm_kernel.rs and the kernel parts
# of weft-dataplane's tests) run inside a VM booted with Debian's stock
# kernel (scripts/vm.sh), because the host's kernel lacks the wireguard and
# ipip modules that users' kernels have.
#
# Usage: scripts/vm-test.sh [FILTER]
#   FILTER                run only the tests whose name contains it
#   VM_TEST_REPEAT        rounds to run (default 1), all in one boot; the
#                         WireGuard labs race at set-up, so repeats are how
#                         a rare failure is caught
#   VM_TEST_REPEAT_FILTER what rounds after the first run: the tests whose
#                         name also contains this (default: all selected)
#   VM_TEST_SHOW_OUTPUT   1: print every run's output, passed ones too (what
#                         tests print, such as measured losses); otherwise
#                         only failed runs' output is printed
#
# Exit status 0 only when every run passed. A VM that does not boot, or a
# guest that does not finish, fails: nothing passes vacuously.
set -euo pipefail
cd "$(dirname "$0")/.."

filter="${1:-}"
repeat="${VM_TEST_REPEAT:-1}"
repeat_filter="${VM_TEST_REPEAT_FILTER:-}"
if ! [[ "$repeat" =~ ^[1-9][0-9]*$ ]]; then
  echo "vm-test: VM_TEST_REPEAT must be a positive number, not '$repeat'" >&2
  exit 2
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "vm-test: needs root (it boots a VM whose tests build network namespaces)" >&2
  exit 1
fi

# What runs in the VM: package, test target, and which of its tests: the
# ignored ones (kernel paths the host lacks: ignored there, so they show as
# ignored, never as passed), or all (tests that take whichever branch the
# kernel offers: the host sees "not supported", the VM the device).
suites=(
  "weft vm_kernel ignored"
  "weft-dataplane wireguard_kernel_golden ignored"
  "weft-dataplane netlink_links all"
  "weft vm_ipsec ignored"
  "weft-dataplane netlink_xfrm all"
)

echo "vm-test: building the binaries the labs run and the test binaries"
# As the test run builds them (dev-dependencies' features included), so
# that nothing is rebuilt when this follows `cargo nextest run`.
cargo test --workspace --no-run --locked --quiet

# The test binary of a package's test target.
test_binary() {
  cargo test -p "$1" --test "$2" --no-run --locked --message-format=json 2>/dev/null |
    TARGET="$2" python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == os.environ["TARGET"] and m.get("executable"):
        print(m["executable"])
'
}

# Every selected test, as binary|test|which.
selected=()
for suite in "${suites[@]}"; do
  read -r package target which <<<"$suite"
  bin=$(test_binary "$package" "$target")
  if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "vm-test: could not find the $target test binary of $package" >&2
    exit 1
  fi
  list=(--list --format terse)
  [[ "$which" == ignored ]] && list+=(--ignored)
  mapfile -t found < <("$bin" "${list[@]}" | sed -n 's/: test$//p' | grep -F -- "$filter" || true)
  for t in "${found[@]}"; do
    selected+=("$bin|$t|$which")
  done
done
if [[ ${#selected[@]} -eq 0 ]]; then
  echo "vm-test: no test matches '$filter'" >&2
  exit 1
fi

# The runs, in order, as round|binary|test|which: round 1 is every selected
# test, later rounds those whose name also matches VM_TEST_REPEAT_FILTER.
runs=()
for round in $(seq 1 "$repeat"); do
  for s in "${selected[@]}"; do
    t=${s#*|}; t=${t%|*}
    if [[ $round -eq 1 || "$t" == *"$repeat_filter"* ]]; then
      runs+=("$round|$s")
    fi
  done
done

results=$(mktemp -d /tmp/weft-vm-test.XXXXXX)
trap 'rm -rf "$results"' EXIT

# The guest runs each test on its own (one lab at a time: the VM has two
# emulated CPUs), goes on after a failure, and writes one line per run to
# the results directory, the only place the host can read back.
# shellcheck disable=SC2016  # expanded by the guest's bash
guest='
set -u
# Emulation is slow: waits in the tests may take this many times longer.
export WEFT_TEST_PATIENCE=4
out=$1; shift
for run in "$@"; do
  IFS="|" read -r round bin t which <<<"$run"
  flags=(--exact "$t" --test-threads=1 --show-output)
  [[ "$which" == ignored ]] && flags+=(--ignored)
  start=$(date +%s)
  if "$bin" "${flags[@]}" >"$out/log.$round.$t" 2>&1; then r=pass; else r=FAIL; fi
  echo "$round $t $r $(( $(date +%s) - start ))s" | tee -a "$out/results"
done
echo done >"$out/finished"
'

echo "vm-test: ${#runs[@]} run(s) of ${#selected[@]} test(s) in $repeat round(s), in the Debian-kernel VM"
start=$(date +%s)
set +e
scripts/vm.sh --rwdir "$results" -- bash -c "$guest" guest "$results" "${runs[@]}"
vm_status=$?
set -e
echo "vm-test: the VM ran for $(( $(date +%s) - start )) s (exit status $vm_status)"

if [[ ! -f "$results/finished" ]]; then
  echo "vm-test: FAILED: the guest did not finish its tests (VM exit status $vm_status)" >&2
  exit 1
fi
failed=0
while read -r round t verdict _; do
  if [[ "$verdict" != pass ]]; then
    failed=$((failed + 1))
    echo "---- round $round: $t failed:"
    tail -n 60 "$results/log.$round.$t"
  fi
done <"$results/results"
if [[ "${VM_TEST_SHOW_OUTPUT:-}" == 1 ]]; then
  while read -r round t verdict _; do
    [[ "$verdict" == pass ]] || continue
    echo "---- round $round: $t passed; its output:"
    cat "$results/log.$round.$t"
  done <"$results/results"
fi
done_runs=$(wc -l <"$results/results")
echo "vm-test: $(( done_runs - failed )) of ${#runs[@]} run(s) passed"
[[ "$failed" -eq 0 && "$done_runs" -eq ${#runs[@]} ]]
