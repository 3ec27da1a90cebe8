//! A node's NIC renumbered under its running agent (issue 24), as a DHCP
//! lease that changes does: `weft lab renumber node2` adds 192.0.2.102 and
//! removes 192.0.2.2. The agent (no --public-ip) publishes the new address
//! in its lease by itself, its peers follow, pod traffic recovers, and the
//! agent's pid never changes. The gap is printed (docs/PERFORMANCE.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::agent::metric;
use common::ping::Pinger;
use common::{TestLab, lab_exec, lab_exec_ok, require_root, wait_until};
use weft_lab::{Backend, StoreKind};

/// Whether node1 now sends node2's traffic to `addr`: its FDB entry
/// (vxlan) or its WireGuard endpoint.
fn node1_uses(lab: &TestLab, backend: Backend, addr: &str) -> bool {
    let out = match backend {
        Backend::Wireguard => lab_exec_ok(lab, "node1", &["wg", "show", "flannel-wg", "endpoints"]),
        _ => lab.ok("node1", &["bridge", "fdb", "show", "dev", "flannel.1"]),
    };
    out.contains(&format!("{addr} ")) || out.contains(&format!("{addr}:"))
}

fn renumbered_node_is_followed(name: &str, backend: Backend, store: StoreKind) {
    require_root();
    let mut lab = TestLab::up_with(name, backend, |spec| {
        spec.store = store;
        spec.agent_args = vec!["--healthz-port=8081".into()];
    });
    let pid = lab.lab().node("node2").unwrap().pid;
    let pinger = Pinger::start(&lab, "node1-pod1", &lab.pod_ip("node2-pod1"));
    wait_until(Duration::from_secs(10), "pings to be answered", || {
        pinger.answered() > 10
    });

    let started = Instant::now();
    let moved = lab.lab_mut().renumber("node2").unwrap();
    assert_eq!(moved.to.to_string(), "192.0.2.102");
    wait_until(
        Duration::from_secs(60),
        "node1 to send node2's traffic to its new address",
        || node1_uses(&lab, backend, "192.0.2.102"),
    );
    let followed = started.elapsed();
    pinger.wait_for_more(10, Duration::from_secs(30), "pings to be answered again");
    let (sent, lost) = pinger.stop();
    println!(
        "{name}: node1 followed node2's new address {followed:.1?} after the renumbering; {lost} of {sent} 10 ms pings lost"
    );

    assert_eq!(
        lab.lab().node("node2").unwrap().pid,
        pid,
        "the agent was restarted"
    );
    assert_eq!(
        metric(&lab, "node2", "weft_external_address_changes_total"),
        1.0
    );
    let status = lab.lab().agent_status("node2").unwrap();
    assert!(!status.subnets.is_empty());
    lab.assert_matrix();
}

#[test]
fn vxlan_on_etcd_follows_a_renumbered_node() {
    renumbered_node_is_followed("rn-vx", Backend::Vxlan, StoreKind::Etcd);
}

#[test]
fn wireguard_on_the_local_store_follows_a_renumbered_node() {
    renumbered_node_is_followed("rn-wg", Backend::Wireguard, StoreKind::Local);
}

/// An address given with --public-ip is not followed when the NIC is
/// renumbered (the agent cannot know a NAT's mapping); `weft public-ip
/// ADDR` on the node publishes the new one without a restart, and peers
/// follow.
#[test]
fn a_given_public_ip_moves_with_weft_public_ip() {
    require_root();
    let mut lab = TestLab::up_with("rn-pip", Backend::Vxlan, |spec| {
        spec.agent_args = vec!["--healthz-port=8081".into()];
        spec.node_agent_args
            .insert("node2".into(), vec!["--public-ip=192.0.2.2".into()]);
    });
    let pid = lab.lab().node("node2").unwrap().pid;
    lab.lab_mut().renumber("node2").unwrap();
    wait_until(
        Duration::from_secs(30),
        "node2 to see its new address",
        || metric(&lab, "node2", "weft_external_address_changes_total") == 1.0,
    );
    common::agent::wait_for_a_full_pass(&lab, "node2");
    assert!(
        node1_uses(&lab, Backend::Vxlan, "192.0.2.2"),
        "the lease followed the interface although --public-ip was given"
    );

    let socket = lab.lab().node("node2").unwrap().dir.join("weftd.sock");
    let socket = socket.to_str().unwrap();
    let weft = env!("CARGO_BIN_EXE_weft");
    let refused = lab_exec(
        &lab,
        "node2",
        &[weft, "public-ip", "::1", "--socket", socket],
    );
    assert!(!refused.status.success());
    let out = lab_exec_ok(
        &lab,
        "node2",
        &[weft, "public-ip", "192.0.2.102", "--socket", socket],
    );
    assert!(out.contains("192.0.2.102"), "{out}");
    wait_until(
        Duration::from_secs(30),
        "node1 to send node2's traffic to the published address",
        || node1_uses(&lab, Backend::Vxlan, "192.0.2.102"),
    );
    assert_eq!(
        lab.lab().node("node2").unwrap().pid,
        pid,
        "the agent was restarted"
    );
    lab.assert_matrix();
}
