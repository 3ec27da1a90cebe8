//! Reading a lab agent from outside: its `/metrics` (the agent runs with
//! `--healthz-port=8081`), waiting for its passes, and the Node objects the
//! Kubernetes test server takes for nodes that join.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;

use super::{TestLab, wait_until};

/// The sum of a metric's samples on `node`'s `/metrics` (the agent runs
/// with `--healthz-port=8081`), read from inside its namespace.
pub fn metric(lab: &TestLab, node: &str, name: &str) -> f64 {
    let (code, text) = super::http(lab, node, "127.0.0.1:8081", "GET", "/metrics", "");
    assert_eq!(code, 200, "/metrics on {node}: {text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let series = l.split_whitespace().next().unwrap_or_default();
            series == name || series.starts_with(&format!("{name}{{"))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until node1 has run two more reconcile passes than when called:
/// the second one started after this call, with everything the store held
/// then (the agent also runs a full pass every 10 s resync).
pub fn wait_for_a_full_pass(lab: &TestLab, node: &str) {
    let passes = metric(lab, node, "weft_reconcile_passes_total");
    wait_until(
        Duration::from_secs(30),
        &format!("{node} to run a full reconcile pass"),
        || metric(lab, node, "weft_reconcile_passes_total") >= passes + 2.0,
    );
}

/// A Node object for the API test server's `POST /weft-test/v1/nodes`:
/// flannel's annotations for a vxlan node at `public_ip` with VTEP MAC
/// `mac`, its podCIDR set (or allocated when `None`); `tweak` spoils it.
pub fn kube_node(
    name: &str,
    public_ip: &str,
    mac: &str,
    pod_cidr: Option<&str>,
    tweak: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> String {
    let mut annotations = serde_json::Map::new();
    for (k, v) in [
        ("kube-subnet-manager", "true".to_owned()),
        ("backend-type", "vxlan".to_owned()),
        ("public-ip", public_ip.to_owned()),
        ("backend-data", format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#)),
    ] {
        annotations.insert(format!("flannel.alpha.coreos.com/{k}"), Value::from(v));
    }
    tweak(&mut annotations);
    let mut node = serde_json::json!({
        "name": name,
        "internalIP": "192.0.2.200",
        "annotations": annotations,
    });
    if let Some(cidr) = pod_cidr {
        node["podCIDRs"] = serde_json::json!([cidr]);
    }
    node.to_string()
}

/// `weft status` on `node` against its agent's status socket (`--json`
/// when `json`), as an operator runs it there.
pub fn weft_status(lab: &TestLab, node: &str, json: bool) -> std::process::Output {
    let socket = lab.lab().node(node).unwrap().dir.join("weftd.sock");
    let mut argv = vec![env!("CARGO_BIN_EXE_weft"), "status"];
    if json {
        argv.push("--json");
    }
    argv.extend(["--socket", socket.to_str().unwrap()]);
    lab.run(node, &argv)
}

/// `weft status --json` on `node`, parsed.
pub fn weft_status_json(lab: &TestLab, node: &str) -> Value {
    let out = weft_status(lab, node, true);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
