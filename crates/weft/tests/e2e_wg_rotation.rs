//! WireGuard key rotation under traffic (issue 21), on the userspace path
//! (gotatun, in process): 10 ms pings from two nodes' pods to the rotating
//! node's pod, a TCP stream across the rotation that arrives byte for
//! byte, and `wg show` listing the new key and never the old one
//! afterwards. The scenario is `common/rotation.rs`; the kernel path runs
//! the same one in the Debian-kernel VM (`vm_kernel.rs`,
//! `kernel_wireguard_key_rotation_loses_nothing`), where it loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::agent::metric;
use common::ping::Pinger;
use common::rotation::{peers_handshook_with, rotate, rotate_under_traffic, wg_show};
use common::{TestLab, require_root, wait_until};
use weft_lab::Backend;

/// Pings one sender may lose across a userspace rotation: 500 ms of 10 ms
/// pings.
///
/// Why not 0: gotatun 0.10 drops every session, receiving ones included,
/// and rebinds its UDP socket when its private key changes, so the
/// packets peers have in flight on the old sessions at that instant are
/// lost (the kernel keeps its receiving sessions: 0 lost in the VM). Why
/// this much: measured 0-4 per sender on an idle host, and 3-6, once 20,
/// on the 2 cores kept busy by 2-4 spinning processes (docs/wireguard.md,
/// "Measured"), where the agents themselves wait for CPU; 500 ms is 2.5
/// times the worst seen. Why it still means something: a rotation that
/// breaks the order (peers moving before the node switched, or a peer
/// without the new key) loses everything until the next handshake
/// attempt, 5 s and more: 500 pings, not 50.
const MAX_LOST_PER_SENDER: u64 = 50;

#[test]
fn rotation_loses_no_ping_and_no_byte() {
    require_root();
    let lab = TestLab::up("rot-u", Backend::Wireguard, &[]);
    let m = rotate_under_traffic(&lab);
    for (from, lost) in &m.lost {
        assert!(
            *lost <= MAX_LOST_PER_SENDER,
            "{from}: {lost} pings lost across the rotation, more than {MAX_LOST_PER_SENDER} (500 ms of traffic): {:?}",
            m.lost
        );
    }
}

/// `--wireguard-key-rotation=5s` on node2: the agent rotates on its own,
/// again and again, while node1's and node3's pods ping node2's every
/// 10 ms; each rotation loses no more than a manual one, the metric counts
/// them, and the peers end on node2's current key with a handshake.
#[test]
fn scheduled_rotation_keeps_connectivity() {
    require_root();
    let lab = TestLab::up_with("rot-s", Backend::Wireguard, |spec| {
        spec.agent_args = vec!["--healthz-port=8081".into()];
        spec.node_agent_args
            .insert("node2".into(), vec!["--wireguard-key-rotation=5s".into()]);
    });
    let target = lab.pod_ip("node2-pod1");
    lab.ok("node1-pod1", &["ping", "-c", "2", &target]);
    let first = wg_show(&lab, "node2", &["public-key"]);
    let rotations = || metric(&lab, "node2", "weft_wireguard_key_rotations_total");
    let before = rotations();
    let pingers = [
        ("node1-pod1", Pinger::start(&lab, "node1-pod1", &target)),
        ("node3-pod1", Pinger::start(&lab, "node3-pod1", &target)),
    ];
    // Two rotations at least: the schedule goes on after the first.
    wait_until(Duration::from_secs(30), "two scheduled rotations", || {
        rotations() >= before + 2.0
    });
    let answered: Vec<u64> = pingers.iter().map(|(_, p)| p.answered()).collect();
    wait_until(Duration::from_secs(10), "the pings to go on", || {
        pingers
            .iter()
            .zip(&answered)
            .all(|((_, p), &a)| p.answered() > a + 100)
    });
    for (from, pinger) in pingers {
        let (sent, lost) = pinger.stop();
        let during = rotations() - before;
        println!(
            "{from} -> node2-pod1 across {during} scheduled rotations: {sent} sent, {lost} lost"
        );
        assert!(
            lost <= MAX_LOST_PER_SENDER * during as u64,
            "{from}: {lost} pings lost across {during} scheduled rotations"
        );
    }
    let now = wg_show(&lab, "node2", &["public-key"]);
    assert_ne!(now, first, "the key never changed");
    wait_until(
        Duration::from_secs(20),
        "node1 and node3 to handshake with node2's current key",
        || {
            let now = wg_show(&lab, "node2", &["public-key"]);
            peers_handshook_with(&lab, &["node1", "node3"], &now)
        },
    );
}

/// A rotation on a node whose pods then send nothing ends within seconds,
/// not at the 3-minute bound, and only once the peers that had a live
/// session at the switch (here both, after a ping each: the rotation reads
/// the devices, not the status view, which can be a tick old) have
/// handshaken with the new key, which they start as soon as they read it
/// from the lease.
#[test]
fn a_rotation_without_traffic_ends_within_seconds() {
    require_root();
    let lab = TestLab::up("rot-i", Backend::Wireguard, &[]);
    for pod in ["node1-pod1", "node3-pod1"] {
        lab.ok("node2-pod1", &["ping", "-c", "1", &lab.pod_ip(pod)]);
    }
    rotate(&lab, "node2");
    let new = wg_show(&lab, "node2", &["public-key"]);
    wait_until(
        Duration::from_secs(30),
        "the rotation to end with no traffic",
        || {
            lab.lab()
                .agent_status("node2")
                .is_ok_and(|s| !s.view.wireguard_key_rotation_in_progress)
        },
    );
    assert!(
        peers_handshook_with(&lab, &["node1", "node3"], &new),
        "the rotation ended before the peers handshook with {new}"
    );
}
