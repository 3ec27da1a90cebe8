//! The Kubernetes lease store end to end (issue 7): agents on
//! `--kube-subnet-mgr` against weft's API test server (a real-contract
//! stand-in for kube-apiserver, which cannot run here), with nodes whose
//! podCIDRs the server allocates as kube-controller-manager does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::load::load_while;
use common::{
    TestLab, assert_finding, finding, http, kube_api, node_from_api, require_root, wait_until,
};
use weft_lab::{Backend, Signal, StoreKind};

fn kube_lab(name: &str) -> TestLab {
    TestLab::up_with(name, Backend::Vxlan, |spec| spec.store = StoreKind::Kube)
}

#[test]
fn pods_reach_each_other_and_nodes_carry_flannels_annotations() {
    require_root();
    let lab = kube_lab("k-mx");
    lab.assert_matrix();
    let n = node_from_api(&lab, "node1");
    let a = &n["metadata"]["annotations"];
    assert_eq!(a["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
    assert_eq!(a["flannel.alpha.coreos.com/backend-type"], "vxlan");
    assert_eq!(a["flannel.alpha.coreos.com/public-ip"], "192.0.2.1");
    let data: serde_json::Value =
        serde_json::from_str(a["flannel.alpha.coreos.com/backend-data"].as_str().unwrap()).unwrap();
    assert_eq!(data["VNI"], 1);
    let mac = data["VtepMAC"].as_str().unwrap().to_owned();
    let link = lab.ok("node1", &["ip", "link", "show", "flannel.1"]);
    assert!(
        link.contains(&mac),
        "the annotation's VtepMAC is flannel.1's: {link}"
    );
    // The node's subnet is its podCIDR.
    assert_eq!(n["spec"]["podCIDR"].as_str().unwrap(), lab.subnet("node1"));
    let cond = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NetworkUnavailable")
        .unwrap()
        .clone();
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "FlannelIsUp");
}

#[test]
fn a_rebooted_node_keeps_its_vtep_mac_from_its_annotation() {
    require_root();
    let mut lab = kube_lab("k-mac");
    let before =
        node_from_api(&lab, "node2")["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"]
            .clone();
    // A reboot: the agent stops and the device is gone.
    lab.lab_mut().kill_agent("node2", Signal::SIGTERM).unwrap();
    lab.ok("node2", &["ip", "link", "del", "flannel.1"]);
    lab.lab_mut().start_agent("node2").unwrap();
    let after =
        node_from_api(&lab, "node2")["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"]
            .clone();
    assert_eq!(
        before, after,
        "the VtepMAC changed across a reboot (flannel #1795)"
    );
    lab.assert_matrix();
}

#[test]
fn api_down_for_60s_loses_nothing_and_new_nodes_arrive_after() {
    require_root();
    let lab = TestLab::up_with("k-down", Backend::Vxlan, |spec| {
        spec.store = StoreKind::Kube;
        spec.agent_args.push("--healthz-port=8081".to_owned());
    });
    let routes_before = lab.ok("node1", &["ip", "route", "show", "proto", "87"]);
    let (code, body) = kube_api(&lab, "POST", "/weft-test/v1/outage?seconds=60", "");
    assert!(code == 200 || code == 204, "{code} {body}");
    // A ping every 10 ms and a TCP stream, both for the whole outage.
    load_while(&lab, 60, || {}).assert_nothing_lost("the API down for 60 s");
    assert_eq!(
        lab.ok("node1", &["ip", "route", "show", "proto", "87"]),
        routes_before,
        "routes changed while the API was down"
    );
    // Back: a node registered after the outage shows up in node1's routes.
    wait_until(Duration::from_secs(30), "the API to serve again", || {
        kube_api(&lab, "GET", "/healthz", "").0 == 200
    });
    let (code, body) = kube_api(
        &lab,
        "POST",
        "/weft-test/v1/nodes",
        r#"{"name":"node9","internalIP":"192.0.2.9","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/public-ip":"192.0.2.9","flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"02:42:00:00:00:09\"}"}}"#,
    );
    assert!(code < 300, "{code} {body}");
    let cidr = node_from_api(&lab, "node9")["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(Duration::from_secs(30), "node9's route on node1", || {
        lab.ok("node1", &["ip", "route"]).contains(&cidr)
    });
    // The outage is counted once, however many reconnects failed in it,
    // and no relist was needed: an operator's alert sees one restart.
    let (code, metrics) = http(&lab, "node1", "127.0.0.1:8081", "GET", "/metrics", "");
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.contains("weft_store_watch_restarts_total{reason=\"error\"} 1\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("reason=\"relist\""), "{metrics}");
}

/// A dual-stack node publishes both families as flannel does: podCIDRs
/// with one CIDR per family, `public-ipv6` and `backend-v6-data` holding
/// flannel-v6.1's MAC; and pods reach each other over both.
#[test]
fn dual_stack_nodes_carry_both_families() {
    require_root();
    let lab = TestLab::up_with("k-ds", Backend::Vxlan, |spec| {
        spec.store = StoreKind::Kube;
        spec.ip_family = weft_lab::IpFamily::Dual;
    });
    lab.assert_matrix();
    let n = node_from_api(&lab, "node2");
    let cidrs = n["spec"]["podCIDRs"].as_array().unwrap();
    assert_eq!(cidrs.len(), 2, "{cidrs:?}");
    assert!(cidrs[1].as_str().unwrap().starts_with("fd00:10:244:"));
    let a = &n["metadata"]["annotations"];
    assert_eq!(a["flannel.alpha.coreos.com/public-ipv6"], "2001:db8::2");
    let data: serde_json::Value = serde_json::from_str(
        a["flannel.alpha.coreos.com/backend-v6-data"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mac = data["VtepMAC"].as_str().unwrap().to_owned();
    let link = lab.ok("node2", &["ip", "link", "show", "flannel-v6.1"]);
    assert!(
        link.contains(&mac),
        "backend-v6-data is flannel-v6.1's: {link}"
    );
}

/// `weft check --kube-subnet-mgr` on a node of a Kubernetes lab: the API
/// answers with the agent's credentials and the node's podCIDR is there; a
/// node the controller-manager has not given a podCIDR fails with the fix;
/// an unknown node name fails naming it.
#[test]
fn weft_check_reads_the_node_and_its_podcidr() {
    require_root();
    let lab = kube_lab("k-chk");
    let kubeconfig = match &lab.lab().state().store {
        weft_lab::StoreState::Kube(k) => k.kubeconfig.clone(),
        other => panic!("not a kube lab: {other:?}"),
    };
    let run_check = |node: &str| {
        lab.run(
            "node1",
            &[
                env!("CARGO_BIN_EXE_weft"),
                "check",
                "--json",
                "--kube-subnet-mgr",
                "--kubeconfig-file",
                kubeconfig.to_str().unwrap(),
                "--node-name",
                node,
            ],
        )
    };
    let check = |node: &str| {
        let out = run_check(node);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (
            finding(&report, "kubernetes API"),
            finding(&report, "podCIDR"),
        )
    };

    let (api, cidr) = check("node1");
    assert_eq!(api["level"], "ok", "{api}");
    assert_finding(&cidr, "ok", "seen", &lab.subnet("node1"));

    let (code, body) = kube_api(
        &lab,
        "POST",
        "/weft-test/v1/nodes",
        r#"{"name":"node8","internalIP":"192.0.2.8","allocatePodCIDR":false}"#,
    );
    assert!(code < 300, "{code} {body}");
    let (api, cidr) = check("node8");
    assert_eq!(api["level"], "ok", "{api}");
    assert_finding(&cidr, "fail", "fix", "--allocate-node-cidrs");

    let out = run_check("no-such-node");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cannot read node no-such-node"), "{text}");
}
