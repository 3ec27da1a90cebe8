#!/usr/bin/env bash
# A short fuzzing pass over every target in fuzz/ (cargo-fuzz, libFuzzer),
# for CI: each target starts from the corpus kept in fuzz/corpus/ and runs
# FUZZ_SECONDS (default 30). Exits non-zero if any target crashes, hangs or
# runs out of memory; the input that did it is copied to fuzz/artifacts/.
#
# cargo-fuzz needs nightly features; this stable toolchain allows them with
# RUSTC_BOOTSTRAP=1. New inputs found during the pass go to a temporary
# directory, so the corpus in the repository never changes here; grow it
# with a long run and `cargo fuzz cmin` (fuzz/README.md).
#
#   scripts/fuzz.sh                 every target, 30 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh lease netconf
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-30}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(netconf lease subnet_env annotations cni_stdin gso gro)
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

echo "== building the fuzz targets"
start=$(date +%s)
cargo fuzz build
echo "built in $(( $(date +%s) - start )) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${seconds} s"
  mkdir -p "$work/$t/new" "$work/$t/artifacts"
  # -close_fd_mask=2: the CNI plugin logs every refusal on stderr;
  # libFuzzer's own report still shows. -timeout: a hang is a failure.
  if cargo fuzz run "$t" "$work/$t/new" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -close_fd_mask=2 \
      -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 \
      >"$work/$t.log" 2>&1; then
    grep -a -E '^Done [0-9]+ runs|^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$work/$t.log" || true
  else
    failed+=("$t")
    tail -n 40 "$work/$t.log"
    mkdir -p artifacts
    for a in "$work/$t/artifacts/"*; do
      [ -e "$a" ] || continue
      cp "$a" "artifacts/$t-$(basename "$a")"
      echo "kept fuzz/artifacts/$t-$(basename "$a"): reproduce with" \
        "RUSTC_BOOTSTRAP=1 cargo fuzz run $t artifacts/$t-$(basename "$a")"
    done
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "== no crash in ${targets[*]}"
