//! Masquerade on the wire: a pod's packet to an address outside the cluster
//! network leaves the node with the node's address as source, for both
//! backends. Three fresh namespaces (root; skipped otherwise):
//!
//! ```text
//! pod 10.244.6.2 ──veth── node 10.244.6.1 | 192.0.2.1 ──veth── outside 192.0.2.2
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_rules;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common_rules::{Netns, require_root, rules, spec_v4};
use weft_dataplane::rules::RulesBackend;

struct Topology {
    pod: Netns,
    node: Netns,
    outside: Netns,
}

fn topology() -> Topology {
    let (pod, node, outside) = (Netns::new(), Netns::new(), Netns::new());
    let (pod_tid, out_tid) = (pod.tid().to_string(), outside.tid().to_string());
    node.sh(&[
        "ip", "link", "add", "cni0", "type", "veth", "peer", "name", "eth0", "netns", &pod_tid,
    ]);
    node.sh(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &out_tid,
    ]);
    node.sh(&["ip", "addr", "add", "10.244.6.1/24", "dev", "cni0"]);
    node.sh(&["ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    node.sh(&["ip", "link", "set", "cni0", "up"]);
    node.sh(&["ip", "link", "set", "eth0", "up"]);
    // /proc/sys/net is per namespace, resolved by the opening thread.
    node.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap());
    pod.sh(&["ip", "addr", "add", "10.244.6.2/24", "dev", "eth0"]);
    pod.sh(&["ip", "link", "set", "eth0", "up"]);
    pod.sh(&["ip", "route", "add", "default", "via", "10.244.6.1"]);
    // The outside host knows nothing of the cluster network: only a
    // masqueraded packet could be answered.
    outside.sh(&["ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    outside.sh(&["ip", "link", "set", "eth0", "up"]);
    Topology { pod, node, outside }
}

/// Sends datagrams from the pod (from a fresh port, so a new conntrack
/// entry decides NAT) until one arrives, and returns the source the outside
/// host saw.
fn source_seen_outside(t: &Topology) -> SocketAddr {
    // Sockets keep the namespace they were made in, whichever thread uses
    // them afterwards.
    let listener = t.outside.run(|| {
        let s = UdpSocket::bind("192.0.2.2:9999").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s
    });
    let sender = t.pod.run(|| UdpSocket::bind("10.244.6.2:0").unwrap());
    // Neighbour resolution can drop the very first datagram: send again
    // until one is received.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 16];
    loop {
        sender.send_to(b"hello", "192.0.2.2:9999").unwrap();
        match listener.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(&buf[..n], b"hello");
                return from;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no datagram from the pod reached the outside: {e}"
            ),
        }
    }
}

fn pod_egress_is_masqueraded(backend: RulesBackend) {
    let t = topology();
    // Control: without rules the pod's own address reaches the outside.
    assert_eq!(source_seen_outside(&t).ip().to_string(), "10.244.6.2");

    t.node.apply(&rules(backend), &spec_v4(true, true)).unwrap();
    assert_eq!(source_seen_outside(&t).ip().to_string(), "192.0.2.1");
}

#[test]
fn iptables_masquerades_pod_egress() {
    require_root();
    pod_egress_is_masqueraded(RulesBackend::Iptables);
}

#[test]
fn nftables_masquerades_pod_egress() {
    require_root();
    pod_egress_is_masqueraded(RulesBackend::Nftables);
}

/// flannel #2237: rewriting the rules must never let a packet out without
/// masquerade. The node rewrites its chain over and over (alternating
/// fully-random on and off forces a real rewrite each time) while the pod
/// sends datagrams from fresh ports; every one must arrive masqueraded.
fn rewrites_leave_no_gap(backend: RulesBackend) {
    let t = topology();
    let r = rules(backend);
    let on = spec_v4(true, true);
    let off = weft_dataplane::rules::RulesSpec {
        fully_random: false,
        ..on.clone()
    };
    t.node.apply(&r, &on).unwrap();
    let listener = t.outside.run(|| {
        let s = UdpSocket::bind("192.0.2.2:9999").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    });
    const SENT: usize = 300;
    let sources: Vec<String> = std::thread::scope(|scope| {
        // Drained while sending: the socket's buffer holds only ~256 datagrams.
        let reader = scope.spawn(|| {
            let mut buf = [0u8; 4];
            let mut sources = Vec::new();
            while let Ok((_, from)) = listener.recv_from(&mut buf) {
                sources.push(from.ip().to_string());
            }
            sources
        });
        scope.spawn(|| {
            for i in 0..20 {
                t.node
                    .apply(&r, if i % 2 == 0 { &off } else { &on })
                    .unwrap();
            }
        });
        t.pod.run(|| {
            for _ in 0..SENT {
                let s = UdpSocket::bind("10.244.6.2:0").unwrap();
                s.send_to(b"x", "192.0.2.2:9999").unwrap();
                // Pacing: spreads the sends over the 20 rewrites and lets the
                // reader keep up with its ~256-datagram buffer.
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        reader.join().unwrap()
    });
    assert!(
        sources.len() > SENT * 9 / 10,
        "only {} of {SENT} arrived",
        sources.len()
    );
    let leaked = sources.iter().filter(|s| *s != "192.0.2.1").count();
    assert_eq!(leaked, 0, "{leaked} datagrams left without masquerade");
}

#[test]
fn iptables_rewrites_leave_no_gap() {
    require_root();
    rewrites_leave_no_gap(RulesBackend::Iptables);
}

#[test]
fn nftables_rewrites_leave_no_gap() {
    require_root();
    rewrites_leave_no_gap(RulesBackend::Nftables);
}
