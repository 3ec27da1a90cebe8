#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need,
# then checks formatting and lints, then runs every test. Root-only tests
# (network namespaces) run when this runs as root and say "skipping"
# otherwise.
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
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== fuzzing: a short pass over every target from the kept corpus"
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" scripts/fuzz.sh
