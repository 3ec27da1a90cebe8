//! Dual-stack and IPv6-only pod networks, end to end: every pair of pods
//! reaches every other over each family, subnet.env carries both
//! families as the CNI plugin expects, the IPv6 pod MTU is honest (an IPv6
//! tunnel costs 20 bytes more), a departed node leaves both families, and
//! IPv6 pod traffic to the outside is masqueraded as the node's address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestLab, nftables_masq, require_root, wait_until};
use weft_lab::{Backend, Family, IpFamily, Signal};

fn dual(name: &str, backend: Backend, family: IpFamily, agent_args: &[&str]) -> TestLab {
    TestLab::up_with(name, backend, |spec| {
        spec.ip_family = family;
        spec.agent_args = agent_args.iter().map(|s| (*s).to_owned()).collect();
    })
}

fn subnet_env(lab: &TestLab, node: &str) -> String {
    std::fs::read_to_string(lab.lab().node(node).unwrap().dir.join("subnet.env")).unwrap()
}

fn env_value(env: &str, key: &str) -> Option<String> {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

fn pod_addr(lab: &TestLab, pod: &str, family: Family) -> String {
    lab.lab()
        .pod(pod)
        .unwrap()
        .address(family)
        .unwrap_or_else(|| panic!("{pod} has no {family} address"))
        .to_string()
}

fn node_subnet(lab: &TestLab, node: &str, family: Family) -> String {
    lab.lab()
        .node(node)
        .unwrap()
        .subnet(family)
        .unwrap_or_else(|| panic!("{node} leased no {family} subnet"))
        .to_string()
}

/// The matrix passes and really covered the families asked for.
fn matrix_covers(lab: &TestLab, families: &[Family]) {
    lab.assert_matrix();
    let report = lab.lab().check().unwrap();
    for family in [Family::V4, Family::V6] {
        let n = report.pairs.iter().filter(|p| p.family == family).count();
        if families.contains(&family) {
            assert!(n >= 6, "only {n} {family} pairs were checked");
        } else {
            assert_eq!(n, 0, "{family} pairs checked in a lab without {family}");
        }
    }
}

fn dual_matrix(name: &str, backend: Backend) {
    require_root();
    let lab = dual(name, backend, IpFamily::Dual, &[]);
    matrix_covers(&lab, &[Family::V4, Family::V6]);
    let env = subnet_env(&lab, "node1");
    assert_eq!(
        env_value(&env, "FLANNEL_IPV6_NETWORK").as_deref(),
        Some("fd00:10:244::/56"),
        "{env}"
    );
    let v6 = node_subnet(&lab, "node1", Family::V6);
    let gw = v6.replace("::/64", "::1/64");
    assert_eq!(env_value(&env, "FLANNEL_IPV6_SUBNET"), Some(gw), "{env}");
    assert!(env_value(&env, "FLANNEL_SUBNET").is_some(), "{env}");
    // WireGuard routes the whole IPv6 network into its v6 device (as
    // flannel does); the others route each peer's subnet.
    let want = match backend {
        Backend::Wireguard => "fd00:10:244::/56 dev flannel-wg-v6".to_owned(),
        _ => node_subnet(&lab, "node2", Family::V6),
    };
    let routes = lab.ok("node1", &["ip", "-6", "route"]);
    assert!(routes.contains(&want), "no route {want}:\n{routes}");
}

mod dual_stack {
    use super::*;

    #[test]
    fn vxlan_pods_reach_each_other_over_both_families() {
        dual_matrix("e6vx", Backend::Vxlan);
    }

    #[test]
    fn host_gw_pods_reach_each_other_over_both_families() {
        dual_matrix("e6hg", Backend::HostGw);
    }

    #[test]
    fn wireguard_pods_reach_each_other_over_both_families() {
        dual_matrix("e6wg", Backend::Wireguard);
    }
}

mod ipv6_only {
    use super::*;

    fn v6_only(name: &str, backend: Backend) {
        require_root();
        let lab = dual(name, backend, IpFamily::Ipv6, &[]);
        matrix_covers(&lab, &[Family::V6]);
        let env = subnet_env(&lab, "node1");
        assert!(env_value(&env, "FLANNEL_SUBNET").is_none(), "{env}");
        assert!(env_value(&env, "FLANNEL_IPV6_SUBNET").is_some(), "{env}");
        assert!(
            lab.lab()
                .pod("node1-pod1")
                .unwrap()
                .address(Family::V4)
                .is_none(),
            "an IPv6-only pod got an IPv4 address"
        );
    }

    #[test]
    fn vxlan_carries_ipv6_pods_over_an_ipv6_underlay() {
        v6_only("e6ovx", Backend::Vxlan);
    }

    #[test]
    fn wireguard_carries_ipv6_pods_over_an_ipv6_underlay() {
        v6_only("e6owg", Backend::Wireguard);
    }

    #[test]
    fn host_gw_routes_ipv6_pods_via_the_peers_ipv6_address() {
        v6_only("e6ohg", Backend::HostGw);
    }
}

/// vxlan over IPv6 has a 70-byte overhead (the kernel refuses more), so a
/// dual-stack node hands pods the smaller MTU; a full-size IPv6 packet
/// with DF crosses, one byte more is refused at once.
#[test]
fn dual_stack_vxlan_pod_mtu_fits_the_ipv6_tunnel() {
    require_root();
    let lab = dual("e6mtu", Backend::Vxlan, IpFamily::Dual, &[]);
    let mtu: u32 = env_value(&subnet_env(&lab, "node1"), "FLANNEL_MTU")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(mtu, 1430);
    let v6dev = lab.ok("node1", &["ip", "-d", "link", "show", "flannel-v6.1"]);
    assert!(v6dev.contains("mtu 1430"), "{v6dev}");
    assert!(v6dev.contains("local 2001:db8::1"), "{v6dev}");
    let fdb = lab.ok("node1", &["bridge", "fdb", "show", "dev", "flannel-v6.1"]);
    assert!(fdb.contains("dst 2001:db8::2"), "{fdb}");

    let target = pod_addr(&lab, "node2-pod1", Family::V6);
    // ICMPv6 echo: 40 bytes of IPv6 header and 8 of ICMPv6 ahead of the data.
    let fits = (mtu - 48).to_string();
    lab.ok(
        "node1-pod1",
        &[
            "ping", "-6", "-M", "do", "-c", "1", "-W", "2", "-s", &fits, &target,
        ],
    );
    let over = (mtu - 47).to_string();
    let out = lab.run(
        "node1-pod1",
        &[
            "ping", "-6", "-M", "do", "-c", "1", "-W", "2", "-s", &over, &target,
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("message too long"), "{text}");
}

/// A node whose dual-stack lease is gone leaves both families' routes on
/// every other node.
#[test]
fn departed_dual_stack_node_leaves_both_families() {
    require_root();
    let mut lab = dual("e6dep", Backend::Vxlan, IpFamily::Dual, &[]);
    let gone4 = node_subnet(&lab, "node3", Family::V4);
    let gone6 = node_subnet(&lab, "node3", Family::V6);
    assert!(lab.ok("node1", &["ip", "-6", "route"]).contains(&gone6));
    lab.lab_mut().kill_agent("node3", Signal::SIGKILL).unwrap();

    let subnets = weft_core::lease::LeaseSubnets {
        v4: Some(gone4.parse().unwrap()),
        v6: Some(gone6.parse().unwrap()),
    };
    let key = weft_core::etcd_key::lease_key(weft_core::etcd_key::DEFAULT_PREFIX, &subnets);
    assert!(key.contains('&'), "a dual-stack key is {key}");
    common::delete_local_lease(&lab, &subnets);
    wait_until(
        Duration::from_secs(10),
        "node3's routes to leave node1",
        || {
            !lab.ok("node1", &["ip", "-6", "route"]).contains(&gone6)
                && !lab.ok("node1", &["ip", "route"]).contains(&gone4)
        },
    );
    let fdb = lab.ok("node1", &["bridge", "fdb", "show", "dev", "flannel-v6.1"]);
    assert!(!fdb.contains("2001:db8::3"), "{fdb}");
}

/// With --ip-masq, a pod's IPv6 connection to the outside arrives from its
/// node's IPv6 address, and ip6tables holds flannel's masquerade chain for
/// the IPv6 network.
#[test]
fn ipv6_pod_traffic_to_the_outside_is_masqueraded() {
    require_root();
    let lab = dual("e6masq", Backend::Vxlan, IpFamily::Dual, &["--ip-masq"]);
    let peer =
        common::outside_connection_source(&lab, "node1-pod1", "2001:db8:ffff::1".parse().unwrap());
    assert_eq!(
        peer.to_string(),
        "2001:db8::1",
        "the pod's IPv6 traffic was not masqueraded"
    );

    let nat = lab.ok("node1", &["ip6tables-save", "-t", "nat"]);
    let subnet = node_subnet(&lab, "node1", Family::V6);
    for line in [
        "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG".to_owned(),
        format!("-A FLANNEL-POSTRTG -s {subnet} -d fd00:10:244::/56 -m comment --comment \"flanneld masq\" -j RETURN"),
        "-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully".to_owned(),
    ] {
        assert!(nat.contains(&line), "{line} missing:\n{nat}");
    }
    // The IPv4 side is masqueraded as before.
    let nat4 = lab.ok("node1", &["iptables-save", "-t", "nat"]);
    assert!(nat4.contains("-s 10.244.0.0/16 ! -d 224.0.0.0/4"), "{nat4}");
    lab.assert_matrix();
}

/// Restarting an agent keeps both of its subnets (the lease is found by
/// its public address, as flannel does).
#[test]
fn restarted_agent_keeps_both_subnets() {
    require_root();
    let mut lab = dual("e6rst", Backend::Vxlan, IpFamily::Dual, &[]);
    let before = lab.lab().node("node2").unwrap().subnets.clone();
    lab.lab_mut().kill_agent("node2", Signal::SIGTERM).unwrap();
    lab.lab_mut().start_agent("node2").unwrap();
    let after = lab.lab().node("node2").unwrap().subnets.clone();
    assert_eq!(before, after);
    wait_until(Duration::from_secs(15), "the matrix after restart", || {
        lab.lab().check().is_ok_and(|r| r.ok)
    });
}

/// With nftables, IPv6 masquerade lives in flannel's `ip6 flannel-ipv6`
/// table, and pods' IPv6 egress is rewritten to the node's address.
#[test]
fn nftables_masquerades_ipv6_in_its_own_table() {
    require_root();
    let lab = TestLab::up_with("e6nft", Backend::Vxlan, |spec| {
        spec.ip_family = IpFamily::Dual;
        nftables_masq(spec);
    });
    let ruleset = lab.ok("node1", &["nft", "list", "table", "ip6", "flannel-ipv6"]);
    for want in [
        "chain postrtg",
        "ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8",
        "masquerade fully-random",
    ] {
        assert!(ruleset.contains(want), "{want} missing:\n{ruleset}");
    }
    let peer =
        common::outside_connection_source(&lab, "node1-pod1", "2001:db8:ffff::1".parse().unwrap());
    assert_eq!(peer.to_string(), "2001:db8::1");
}

/// WireGuard's single-device modes carry both families through one
/// `flannel-wg` whose peers hold both subnets.
#[test]
fn wireguard_single_device_mode_carries_both_families() {
    require_root();
    let lab = TestLab::up_with("e6wga", Backend::Wireguard, |spec| {
        spec.ip_family = IpFamily::Dual;
        spec.backend_options
            .insert("Mode".into(), serde_json::Value::from("ipv6"));
    });
    matrix_covers(&lab, &[Family::V4, Family::V6]);
    let links = lab.ok("node1", &["ip", "-o", "link", "show"]);
    assert!(!links.contains("flannel-wg-v6"), "{links}");
    let dump = common::lab_exec_ok(&lab, "node1", &["wg", "show", "flannel-wg", "dump"]);
    let peer_subnets = [
        node_subnet(&lab, "node2", Family::V4),
        node_subnet(&lab, "node2", Family::V6),
    ];
    let line = dump
        .lines()
        .find(|l| l.contains(&peer_subnets[0]))
        .unwrap_or_else(|| panic!("no peer for node2:\n{dump}"));
    assert!(line.contains(&peer_subnets[1]), "{line}");
    assert!(
        line.contains("[2001:db8::2]:51820"),
        "endpoint over IPv6: {line}"
    );
}
