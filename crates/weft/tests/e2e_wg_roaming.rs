//! WireGuard roaming is respected (issue 24): when a peer's packets arrive
//! from an address other than its lease's, WireGuard moves the peer's
//! endpoint there, and the agent's passes leave it there while the session
//! lives (docs/wireguard.md, "Endpoints and roaming").
//!
//! The lab emulates what a NAT does to a node: node2 starts sending from a
//! second address, and node1 loses its way to node2's lease address (a
//! blackhole route in node1), so only the roamed endpoint can carry the
//! pair. An agent that wrote the lease's endpoint back on a pass would cut
//! node1's pods off from node2's at that pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::agent::{metric, wait_for_a_full_pass};
use common::ping::Pinger;
use common::{TestLab, lab_exec_ok, require_root, wait_until};
use weft_lab::Backend;

/// node2's second underlay address: where its packets come from once it
/// "moves behind a NAT".
const ROAMED_IP: &str = "192.0.2.102";

/// node1's endpoint for `key`, as `wg show flannel-wg endpoints` lists it.
fn endpoint_of(lab: &TestLab, node: &str, key: &str) -> String {
    let out = lab_exec_ok(lab, node, &["wg", "show", "flannel-wg", "endpoints"]);
    out.lines()
        .find_map(|l| {
            let (k, endpoint) = l.split_once('\t')?;
            (k == key).then(|| endpoint.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{node} has no peer {key}: {out}"))
}

fn ping_ok(lab: &TestLab, from: &str, to: &str) -> bool {
    let target = lab.pod_ip(to);
    lab.run(from, &["ping", "-c", "3", "-i", "0.2", "-W", "1", &target])
        .status
        .success()
}

#[test]
fn a_roamed_endpoint_survives_the_agents_passes() {
    require_root();
    let lab = TestLab::up("w-roam", Backend::Wireguard, &["--healthz-port=8081"]);
    let node2_ip = lab.lab().node("node2").unwrap().underlay_ip.to_string();
    let node2_key = lab_exec_ok(&lab, "node2", &["wg", "show", "flannel-wg", "public-key"])
        .trim()
        .to_owned();
    assert_eq!(
        endpoint_of(&lab, "node1", &node2_key),
        format!("{node2_ip}:51820")
    );

    // node2 now sends from its second address: the source its routes pick.
    lab.ok(
        "node2",
        &[
            "ip",
            "addr",
            "add",
            &format!("{ROAMED_IP}/24"),
            "dev",
            "eth0",
        ],
    );
    lab.ok(
        "node2",
        &[
            "ip",
            "route",
            "replace",
            "192.0.2.0/24",
            "dev",
            "eth0",
            "src",
            ROAMED_IP,
        ],
    );
    let roamed = format!("{ROAMED_IP}:51820");
    wait_until(
        Duration::from_secs(20),
        "node1 to roam node2's endpoint to its new address",
        || {
            // Replies from node2's pod come from the new address.
            ping_ok(&lab, "node1-pod1", "node2-pod1");
            endpoint_of(&lab, "node1", &node2_key) == roamed
        },
    );
    // Only the roamed endpoint reaches node2 from now on.
    lab.ok(
        "node1",
        &["ip", "route", "add", "blackhole", &format!("{node2_ip}/32")],
    );

    // Pings run across four passes at least (two full ones, each two
    // passes): one pass writing the lease's endpoint back cuts them until
    // node2 happens to send first.
    let pinger = Pinger::start(&lab, "node1-pod1", &lab.pod_ip("node2-pod1"));
    for _ in 0..2 {
        wait_for_a_full_pass(&lab, "node1");
    }
    // Answers still arrive after the last pass (a loss counts only up to
    // the last answer).
    pinger.wait_for_more(
        10,
        Duration::from_secs(5),
        "pings to be answered after the passes",
    );
    let (sent, lost) = pinger.stop();
    assert!(sent > 100, "only {sent} pings were sent");
    assert_eq!(lost, 0, "{lost} of {sent} pings lost across the passes");
    assert_eq!(
        endpoint_of(&lab, "node1", &node2_key),
        roamed,
        "a pass wrote node2's lease endpoint back over the roamed one"
    );

    // weft status agrees: a roamed endpoint with a live session is no drift.
    let status = common::agent::weft_status_json(&lab, "node1");
    let drift = status["drift"].as_array().unwrap();
    assert!(
        drift.iter().all(|d| d["kind"] != "wireguard"),
        "weft status calls the roamed endpoint drift: {drift:?}"
    );
    // ... but says where node2 is really reached: behind a NAT, or with a
    // stale advertised address.
    let peers = status["peers"].as_array().unwrap();
    let node2 = peers
        .iter()
        .find(|p| p["public_ip"] == node2_ip.as_str())
        .unwrap_or_else(|| panic!("no row for node2: {peers:?}"));
    assert_eq!(node2["reached_at"], roamed.as_str(), "{node2}");
    // And a metric counts such peers, for an alert.
    wait_until(
        Duration::from_secs(10),
        "node1 to count node2 as reached elsewhere",
        || metric(&lab, "node1", "weft_wireguard_peers_reached_elsewhere") == 1.0,
    );
}
