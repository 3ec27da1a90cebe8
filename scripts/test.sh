#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need,
# then checks formatting and lints, then runs every test: on this host,
# then the kernel paths the host kernel lacks (wireguard, ipip) in a VM with
# Debian's kernel. Root-only tests (network namespaces, the VM) run when
# this runs as root and say "skipping" otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== deploy/ manifests"
scripts/validate-manifests.sh

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  # One process per test: netns tests cannot leak namespace state into others.
  # Without root, the tests that need it are left out and reported as
  # skipped (.config/nextest.toml), never counted as passed.
  profile=default
  if [[ $(id -u) -ne 0 ]]; then
    profile=unprivileged
    echo "not root: tests that build network namespaces are skipped (nextest profile unprivileged)"
  fi
  cargo nextest run --workspace --locked --no-fail-fast --profile "$profile"
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== kernel paths in a VM with Debian's kernel (scripts/vm-test.sh)"
if [[ $(id -u) -eq 0 ]]; then
  # Every test once, in one boot under emulation (about 20 minutes with
  # the ipsec and multicloud labs); the VM's own limit is raised to match,
  # so a slow, loaded machine does not fail a passing suite. Repeats of the
  # WireGuard labs (their set-up races; repeats catch a rare loss) are
  # opt-in, e.g. VM_TEST_REPEAT=3 VM_TEST_REPEAT_FILTER=wireguard: a second
  # round cost CI about 8 minutes on every run.
  VM_TEST_REPEAT="${VM_TEST_REPEAT:-1}" VM_TEST_REPEAT_FILTER="${VM_TEST_REPEAT_FILTER:-wireguard}" \
    WEFT_VM_TIMEOUT="${WEFT_VM_TIMEOUT:-2700}" scripts/vm-test.sh
else
  echo "skipping: the VM tests need root (they boot a VM and build network namespaces)"
fi

echo "== fuzzing: a short pass over every target from the kept corpus"
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" scripts/fuzz.sh
