//! What an operator uses to answer "is my overlay healthy": `weft status`
//! on a lab node (and its drift detection), `/readyz` and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestLab, require_root, wait_until};
use weft_lab::Backend;

fn status(lab: &TestLab, node: &str) -> serde_json::Value {
    common::agent::weft_status_json(lab, node)
}

/// GET `path` on `node`'s health port.
fn http_get(lab: &TestLab, node: &str, path: &str) -> (u16, String) {
    common::health_get(&lab.lab().netns_of(node).unwrap(), path)
}

/// Runs `tamper` on node1 until `weft status` reports a drift entry that
/// `is_it` (up to three times: a resync falling in between may repair the
/// change before the status is read), then waits for the resync to repair
/// it. The status that reported it.
fn drift_seen_then_repaired(
    lab: &TestLab,
    what: &str,
    tamper: impl Fn() -> String,
    is_it: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let seen = (0..3)
        .find_map(|_| {
            tamper();
            let s = status(lab, "node1");
            s["drift"]
                .as_array()
                .unwrap()
                .iter()
                .any(&is_it)
                .then_some(s)
        })
        .unwrap_or_else(|| panic!("weft status never reported {what}"));
    assert_eq!(seen["ok"], false);
    wait_until(
        Duration::from_secs(15),
        &format!("the resync to repair {what}"),
        || status(lab, "node1")["ok"] == true,
    );
    seen
}

#[test]
fn status_lists_peers_and_flags_drift_until_repaired() {
    require_root();
    let lab = TestLab::up("e2st", Backend::Vxlan, &[]);
    let s = status(&lab, "node1");
    assert_eq!(s["ok"], true, "{s:#}");
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{s:#}");
    for p in peers {
        assert_eq!(p["state"], "programmed", "{p}");
        assert_eq!(
            (p["route"].clone(), p["neighbour"].clone(), p["fdb"].clone()),
            (true.into(), true.into(), true.into())
        );
    }
    assert!(!serde_json::to_string(&s).unwrap().contains("PrivateKey"));

    let peer = lab.subnet("node2");
    // The agent repairs at its next resync (every 10 s): delete, then look
    // at once; in the rare case a resync fell in between, try again.
    let s = drift_seen_then_repaired(
        &lab,
        "the deleted route",
        || lab.ok("node1", &["ip", "route", "del", &peer]),
        |d| d["kind"] == "route" && d["what"].as_str().unwrap().starts_with(&peer),
    );
    let row = s["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["subnets"][0] == peer.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["state"], "drift", "{row}");
    assert_eq!(row["route"], false, "{row}");
    // A stale entry is drift too (the next pass removes it): a permanent
    // neighbour on flannel.1 that no peer has.
    drift_seen_then_repaired(
        &lab,
        "a stale neighbour",
        || {
            lab.ok(
                "node1",
                &[
                    "ip",
                    "neigh",
                    "replace",
                    "10.244.250.0",
                    "lladdr",
                    "02:42:00:00:00:fa",
                    "dev",
                    "flannel.1",
                    "nud",
                    "permanent",
                ],
            )
        },
        |d| {
            d["kind"] == "neighbour"
                && d["what"] == "10.244.250.0 dev flannel.1"
                && d["problem"].as_str().unwrap().starts_with("stale")
        },
    );
    // The repair is logged as such, not hidden in a per-pass summary.
    let log =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("weftd.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("repaired kernel state") && l.contains("route")),
        "{log}"
    );
}

#[test]
fn readyz_and_metrics_answer_and_count() {
    require_root();
    let lab = TestLab::up("e2mt", Backend::HostGw, &["--healthz-port=8081"]);
    assert_eq!(
        http_get(&lab, "node1", "/healthz"),
        (200, "flanneld is running".into())
    );
    assert_eq!(
        http_get(&lab, "node1", "/readyz"),
        (200, "flanneld is ready".into())
    );
    let (code, text) = http_get(&lab, "node1", "/metrics");
    assert_eq!(code, 200);
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    let lines: Vec<String> = text
        .lines()
        .filter(|l| *l != "# EOF")
        .map(str::to_owned)
        .collect();
    let parsed = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).unwrap();
    let value = |name: &str| -> f64 {
        parsed
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(value("weft_peers"), 2.0);
    assert_eq!(value("weft_ready"), 1.0);
    assert!(value("weft_lease_expiry_timestamp_seconds") > 1.7e9);
    let passes = value("weft_reconcile_passes_total");
    assert!(passes >= 1.0);
    assert!(
        value("weft_kernel_changes_total") >= 2.0,
        "two peer routes were set"
    );
    // Tampering moves the counters.
    let peer = lab.subnet("node2");
    lab.ok("node1", &["ip", "route", "del", &peer]);
    wait_until(Duration::from_secs(15), "the repair to be counted", || {
        let (_, t) = http_get(&lab, "node1", "/metrics");
        t.lines()
            .any(|l| l.starts_with("weft_kernel_changes_total{kind=\"route_set\"} 3"))
    });
}
