//! `weft check` on a node of a running lab (etcd store, vxlan): every
//! finding is true of that node, the store and its clock are checked, and
//! a store that goes away is a failure that says how to fix it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestLab, assert_finding, etcd_net_conf, finding, one_line, require_root, weft_check};
use weft_lab::{Backend, StoreKind};

const ETCD: &str = "http://192.0.2.250:2379";

fn check(lab: &TestLab, conf: &std::path::Path) -> serde_json::Value {
    weft_check(lab, "node1", conf, &["--etcd-endpoints", ETCD])
}

#[test]
fn every_finding_on_a_lab_node_is_true() {
    require_root();
    let mut lab = TestLab::up_with("chk", Backend::Vxlan, |spec| spec.store = StoreKind::Etcd);
    // The net-conf.json the agents read, from the lab's etcd.
    let dir = tempfile::tempdir().unwrap();
    let path = etcd_net_conf(&lab, dir.path());

    let report = check(&lab, &path);
    let env =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("subnet.env")).unwrap();
    let mtu = env
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_MTU="))
        .unwrap();
    // The agent said once at start what it chose and why.
    let log =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("weftd.log")).unwrap();
    let said = one_line(&log, &["vxlan TX checksum offload"]);
    assert!(said.contains("offload on (kernel "), "{said}");
    assert!(said.contains("driver veth)"), "{said}");
    for (name, seen) in [
        ("net-conf.json", "backend vxlan".to_owned()),
        ("kernel vxlan", "can be created".to_owned()),
        ("ip_forward", "= 1".to_owned()),
        (
            "external interface",
            "eth0 (192.0.2.1), MTU 1500".to_owned(),
        ),
        ("pod MTU", format!("= {mtu}")),
        ("udp port 8472", "in use by flannel.1".to_owned()),
        ("firewall 8472/udp", "no host rule drops it".to_owned()),
        // This kernel has the #1279 fix and the underlay is a veth: weft
        // keeps offload on, says why, and the device holds it.
        ("vxlan checksum offload", "on (kernel ".to_owned()),
        ("vxlan checksum offload", ", driver veth)".to_owned()),
        (
            "checksum offload flannel.1",
            "TX checksum offload on on flannel.1, as chosen".to_owned(),
        ),
        ("etcd", "/coreos.com/network/config exists".to_owned()),
        ("clock", format!("within 5s of {ETCD}")),
    ] {
        assert_finding(&finding(&report, name), "ok", "seen", &seen);
    }
    // The only finding this machine may warn about is the WireGuard
    // module, and then it says userspace takes over.
    for f in report["findings"].as_array().unwrap() {
        match f["level"].as_str().unwrap() {
            "ok" => {}
            "warn" if f["name"] == "kernel wireguard" => {
                assert!(f["seen"].as_str().unwrap().contains("userspace"), "{f}")
            }
            _ => panic!("unexpected finding on a healthy node: {f}"),
        }
    }
    assert_eq!(report["ok"], true);

    // The store goes away: a failure naming the endpoint, with its fix,
    // and no clock comparison against a store that does not answer.
    lab.lab_mut().stop_store().unwrap();
    let report = check(&lab, &path);
    let f = finding(&report, "etcd");
    assert_finding(&f, "fail", "seen", ETCD);
    assert_finding(&f, "fail", "fix", "--etcd-endpoints");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "clock"),
        "{report:#}"
    );
    assert_eq!(report["ok"], false);
}

/// `"TxChecksumOffload": false` still turns offload off on a node where
/// weft would keep it on: the agent says so, the device holds it, and
/// `weft check` names net-conf as the reason without warning about it.
#[test]
fn explicit_false_turns_checksum_offload_off() {
    require_root();
    let lab = TestLab::up_with("chkoff", Backend::Vxlan, |spec| {
        spec.store = StoreKind::Etcd;
        spec.nodes = 2;
        spec.backend_options
            .insert("TxChecksumOffload".into(), false.into());
    });
    let dir = tempfile::tempdir().unwrap();
    let path = etcd_net_conf(&lab, dir.path());

    let features = lab.ok("node1", &["ethtool", "-k", "flannel.1"]);
    assert!(
        features.contains("tx-checksum-ip-generic: off"),
        "{features}"
    );
    let log =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("weftd.log")).unwrap();
    assert!(
        log.contains("vxlan TX checksum offload off: TxChecksumOffload is false in net-conf.json"),
        "{log}"
    );

    let report = check(&lab, &path);
    let f = finding(&report, "vxlan checksum offload");
    assert_eq!(f["level"], "ok", "{f}");
    let seen = f["seen"].as_str().unwrap();
    assert!(
        seen.starts_with("off: TxChecksumOffload is false in net-conf.json"),
        "{seen}"
    );
    assert!(seen.contains("weft would keep it on here"), "{seen}");
    let f = finding(&report, "checksum offload flannel.1");
    assert_eq!(f["level"], "ok", "{f}");
    assert_eq!(f["seen"], "TX checksum offload off on flannel.1, as chosen");
}
