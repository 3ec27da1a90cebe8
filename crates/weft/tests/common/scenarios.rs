//! Scenarios shared by the per-backend end-to-end tests on this host
//! (e2e_dataplane) and the kernel-path tests in the Debian-kernel VM
//! (vm_kernel): each runs on a lab the caller brought up, so the VM can
//! run several in one lab (labs are slow to build under emulation).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::load::load_at_while;
use super::{TestLab, tcp_sockets, wait_until};
use weft_core::lease::LeaseSubnets;
use weft_lab::{Backend, Signal};

pub fn mtu_of(lab: &TestLab, node: &str) -> u32 {
    let env =
        std::fs::read_to_string(lab.lab().node(node).unwrap().dir.join("subnet.env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix("FLANNEL_MTU="))
        .unwrap()
        .parse()
        .unwrap()
}

pub fn routes(lab: &TestLab, node: &str) -> String {
    lab.ok(node, &["ip", "route"])
}

/// A node that is gone (agent dead, lease removed as an operator or the
/// TTL would) leaves every other node's kernel.
pub fn departed_node_is_cleaned_up(lab: &mut TestLab, backend: Backend) {
    let gone = lab.subnet("node3");
    assert!(routes(lab, "node1").contains(&gone));
    lab.lab_mut().kill_agent("node3", Signal::SIGKILL).unwrap();

    let node3 = lab.lab().node("node3").unwrap().subnets[0];
    super::delete_local_lease(
        lab,
        &LeaseSubnets {
            v4: weft_core::prefix::as_v4(node3),
            v6: None,
        },
    );

    wait_until(
        Duration::from_secs(10),
        "node3's route to leave node1",
        || !routes(lab, "node1").contains(&gone),
    );
    if backend == Backend::Vxlan {
        let gw = gone.split('/').next().unwrap().to_owned();
        assert!(
            !lab.ok("node1", &["ip", "neigh", "show", "dev", "flannel.1"])
                .contains(&gw)
        );
        assert!(
            !lab.ok("node1", &["bridge", "fdb", "show", "dev", "flannel.1"])
                .contains("192.0.2.3")
        );
    }
    wait_until(
        Duration::from_secs(10),
        "node3's route to leave node2",
        || !routes(lab, "node2").contains(&gone),
    );
    // The operator's log says which node left, in one line.
    let log =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("weftd.log")).unwrap();
    let line = super::one_line(&log, &["peer removed: ", &gone]);
    assert!(line.contains("192.0.2.3"), "{log}");
}

/// SIGKILL and restart an agent while a 10 ms ping and a TCP stream cross
/// its node: the kernel keeps forwarding, nothing is lost.
pub fn agent_killed_under_load_loses_nothing(lab: &mut TestLab) {
    let load = load_at_while(lab, 4, "200M", || {
        // Under load means both flows cross node2 when its agent dies: pings
        // arriving (as load_at_while waits for) and iperf3's control and
        // data connections established.
        wait_until(
            Duration::from_secs(10),
            "iperf3's control and data connections to node2-pod1",
            || tcp_sockets(lab, "node2-pod1", "established", 5201) >= 2,
        );
        lab.lab_mut_unchecked_kill("node2");
    });
    load.assert_nothing_lost("agent SIGKILLed under load");
    lab.lab_mut().start_agent("node2").unwrap();
    lab.assert_matrix();
}

/// The route to a peer deleted by hand comes back by itself; for vxlan and
/// ipip the whole device too, with every peer entry.
pub fn tampering_is_repaired(lab: &TestLab, backend: Backend) {
    let peer = lab.subnet("node2");
    lab.ok("node1", &["ip", "route", "del", &peer]);
    wait_until(
        Duration::from_secs(15),
        "the deleted route to come back",
        || routes(lab, "node1").contains(&peer),
    );
    // The device itself, deleted by hand, comes back with its own address
    // and every peer's route.
    let device = match backend {
        Backend::Ipip => Some("flannel.ipip"),
        Backend::Vxlan => Some("flannel.1"),
        _ => None,
    };
    if let Some(dev) = device {
        lab.ok("node1", &["ip", "link", "del", dev]);
        wait_until(
            Duration::from_secs(15),
            &format!("{dev} and every peer's route to come back"),
            || {
                // Fails (stdout empty) while the device is not back yet.
                let out = lab.run("node1", &["ip", "route", "show", "dev", dev]);
                let r = String::from_utf8_lossy(&out.stdout);
                ["node2", "node3"]
                    .iter()
                    .all(|n| r.contains(&lab.subnet(n)))
            },
        );
        let own = lab.subnet("node1").replace("/24", "/32");
        let addr = lab.ok("node1", &["ip", "addr", "show", dev]);
        assert!(addr.contains(&own), "{addr}");
    }
    if backend == Backend::Vxlan {
        // Every peer's neighbour and FDB entry came back with the device.
        wait_until(
            Duration::from_secs(15),
            "every peer's neighbour and FDB entry on the new flannel.1",
            || {
                let (neigh, fdb) = vxlan_entries(lab, "node1");
                ["node2", "node3"].iter().all(|n| {
                    let gw = lab.subnet(n).split('/').next().unwrap().to_owned();
                    neigh.lines().any(|l| l.starts_with(&format!("{gw} ")))
                }) && fdb.contains("dst 192.0.2.2")
                    && fdb.contains("dst 192.0.2.3")
            },
        );
    }
    lab.assert_matrix();
}

/// What the agent programmed on `node`, as an operator would list it.
pub fn kernel_state(lab: &TestLab, node: &str, backend: Backend) -> Vec<String> {
    let mut out = vec![
        lab.ok(node, &["ip", "route", "show", "proto", "87"]),
        lab.ok(node, &["ip", "-br", "addr", "show"]),
    ];
    if backend == Backend::Vxlan {
        let (neigh, fdb) = vxlan_entries(lab, node);
        out.push(neigh);
        out.push(fdb);
    }
    out
}

/// The neighbour and the FDB entries on `node`'s flannel.1, as `ip neigh`
/// and `bridge fdb` list them.
pub fn vxlan_entries(lab: &TestLab, node: &str) -> (String, String) {
    (
        lab.ok(node, &["ip", "neigh", "show", "dev", "flannel.1"]),
        lab.ok(node, &["bridge", "fdb", "show", "dev", "flannel.1"]),
    )
}

/// SIGTERM (a DaemonSet rollout, `systemctl stop`) ends the agent and
/// leaves the kernel exactly as it was: pods keep reaching each other with
/// no agent running, and the next agent adopts it all.
pub fn sigterm_leaves_the_dataplane_in_place(lab: &mut TestLab, backend: Backend) {
    let before = kernel_state(lab, "node1", backend);
    assert!(before[0].contains(&lab.subnet("node2")), "{}", before[0]);
    lab.lab_mut().kill_agent("node1", Signal::SIGTERM).unwrap();
    let log =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("weftd.log")).unwrap();
    assert!(log.contains("SIGTERM received: shutting down"), "{log}");
    assert!(
        !log.contains("second signal"),
        "the agent needed more than SIGTERM to stop:\n{log}"
    );
    assert_eq!(kernel_state(lab, "node1", backend), before);
    lab.assert_matrix();
}

/// A packet of exactly the pod MTU with DF set crosses; one byte more is
/// refused at once with "message too long", not silently dropped.
pub fn pod_mtu_is_honest(lab: &TestLab, expected_mtu: u32) {
    let mtu = mtu_of(lab, "node1");
    assert_eq!(mtu, expected_mtu);
    let target = lab.pod_ip("node2-pod1");
    let fits = (mtu - 28).to_string();
    lab.ok(
        "node1-pod1",
        &[
            "ping", "-M", "do", "-c", "1", "-W", "2", "-s", &fits, &target,
        ],
    );
    let over = (mtu - 27).to_string();
    let out = lab.run(
        "node1-pod1",
        &[
            "ping", "-M", "do", "-c", "1", "-W", "2", "-s", &over, &target,
        ],
    );
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("message too long"), "{text}");
}

/// With --ip-masq a pod reaching the outside arrives with its node's
/// address; the rules read back are flannel's layout.
pub fn masquerade_to_outside(lab: &TestLab) {
    let peer = super::outside_connection_source(lab, "node1-pod1", "198.51.100.1".parse().unwrap());
    assert_eq!(
        peer.to_string(),
        "192.0.2.1",
        "the pod's traffic was not masqueraded"
    );

    let nat = lab.ok("node1", &["iptables-save", "-t", "nat"]);
    let subnet = lab.subnet("node1");
    let expected = [
        "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG".to_owned(),
        "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN".to_owned(),
        format!("-A FLANNEL-POSTRTG -s {subnet} -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN"),
        format!("-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d {subnet} -m comment --comment \"flanneld masq\" -j RETURN"),
        format!("-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d {subnet} -m comment --comment \"flanneld masq\" -j RETURN"),
        "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully".to_owned(),
        "-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully".to_owned(),
    ];
    let got: Vec<&str> = nat
        .lines()
        .filter(|l| l.contains("flanneld masq"))
        .collect();
    assert_eq!(
        got,
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "{nat}"
    );
    let filter = lab.ok("node1", &["iptables-save", "-t", "filter"]);
    for line in [
        "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD",
        "-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
        "-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
    ] {
        assert!(filter.contains(line), "{line} missing:\n{filter}");
    }
    lab.assert_matrix();
}

pub trait KillUnchecked {
    fn lab_mut_unchecked_kill(&self, node: &str);
}

impl KillUnchecked for TestLab {
    /// SIGKILL by pid from the lab's state, usable while other threads hold
    /// `&TestLab` (the scoped threads of the load test).
    fn lab_mut_unchecked_kill(&self, node: &str) {
        let pid = self.lab().node(node).unwrap().pid.expect("agent running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    }
}
