//! Regression floors for the control plane, as ratios measured within one
//! run of `weft bench` (never absolute times: this machine is shared).
//!
//! Ignored by default (about a minute, needs root and etcd); run with
//! `cargo build --release --workspace && cargo test --release -p weft
//! --test bench_ratios -- --ignored` (the bench starts the `weftd` found
//! next to the test's `weft`, which only the workspace build refreshes).
//! Each floor is the ratio recorded when it was set (2026-11-22, see
//! docs/PERFORMANCE.md) with the spread seen between runs added:
//!
//! - CPU per no-change pass per peer, K = 4 000 over K = 500: recorded
//!   0.9–1.0 (linear); fails above 1.6.
//! - new lease → route p50 over the wall time of a full pass, K = 4 000:
//!   recorded 0.4–0.5 (new entries go in before the full pass reads the
//!   kernel); fails above 0.8, which is where it was before that change
//!   (1.3).
//! - cold start over bare netlink batches of the same entries, K = 4 000:
//!   recorded 1.0–1.4; fails above 2.0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

/// The cells of the `n`-th table row whose first cell is `k`, in the
/// section titled `section`.
fn row(report: &str, section: &str, k: &str, n: usize) -> Vec<String> {
    let start = report.find(section).expect("section missing");
    let end = report[start + 3..]
        .find("\n## ")
        .map_or(report.len(), |e| start + 3 + e);
    report[start..end]
        .lines()
        .filter(|l| l.starts_with(&format!("| {k} |")))
        .nth(n)
        .unwrap_or_else(|| panic!("no row {n} for K = {k} in {section}"))
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// The median of a "min / median / max" cell, or the first number.
fn median(cell: &str) -> f64 {
    let parts: Vec<&str> = cell.split(" / ").collect();
    let pick = if parts.len() == 3 { parts[1] } else { parts[0] };
    pick.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell}"))
}

#[test]
#[ignore = "a minute of measurement; run by hand with --release (see the module doc)"]
fn control_plane_ratios_hold() {
    if !common::root() {
        return;
    }
    if cfg!(debug_assertions) {
        eprintln!("skipping: the floors are for release builds (cargo test --release)");
        return;
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "bench", "--only", "scale", "--peers", "500,4000", "--runs", "3", "--out",
        ])
        .arg(out.path())
        .status()
        .unwrap();
    let report = std::fs::read_to_string(out.path()).unwrap();
    assert!(status.success(), "weft bench failed:\n{report}");
    let section = "## Control plane at scale";

    let cold = row(&report, section, "4000", 0);
    let cold_ratio = median(&cold[3]);
    assert!(
        cold_ratio <= 2.0,
        "cold start / bare netlink = {cold_ratio}: {cold:?}"
    );

    let lease = row(&report, section, "4000", 1);
    let p50: f64 = lease[2].split(" / ").next().unwrap().parse().unwrap();
    let pass = row(&report, section, "4000", 2);
    let wall: f64 = pass[4].parse().unwrap();
    let share = p50 * 1e3 / wall;
    assert!(
        share <= 0.8,
        "new lease p50 / full pass = {share:.2}: {lease:?} {pass:?}"
    );

    let small: f64 = row(&report, section, "500", 2)[3].parse().unwrap();
    let large: f64 = pass[3].parse().unwrap();
    let growth = large / small;
    assert!(
        growth <= 1.6,
        "CPU per peer per pass grew {growth:.2} × from K = 500 to 4 000"
    );
}
