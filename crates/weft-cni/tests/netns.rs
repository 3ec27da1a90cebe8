//! Pods made the way a kubelet makes them: the plugin runs in a throwaway
//! node namespace with the real reference plugins (bridge, host-local) and
//! wires pod namespaces. Needs root: fails without it (the `unprivileged` nextest profile skips it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{DUAL_STACK_ENV, Netns, Node, require_root};
use serde_json::{Value, json};

/// The addresses (`addr/len`) of `dev` in `ns`.
fn addresses(ns: &Netns, dev: &str) -> Vec<String> {
    let links = ns.ip_json(&["addr", "show", "dev", dev]);
    links[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn route_dsts(ns: &Netns, family: &str) -> Vec<String> {
    let routes = ns.ip_json(&[family, "route", "show", "dev", "eth0"]);
    routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn add_check_del_dual_stack() {
    require_root();
    let node = Node::new(DUAL_STACK_ENV);
    let pod = Netns::new();
    let conf = node.conf(json!({}));

    let result = node.add("pod1", &pod, &conf).success().json();
    // The golden result's shape: bridge, host veth, pod eth0; one address
    // per family on eth0; cluster-network routes then the defaults.
    let golden: Value =
        serde_json::from_str(include_str!("golden/cni-add-result-dualstack.json")).unwrap();
    assert_eq!(result["cniVersion"], golden["cniVersion"]);
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "cni0");
    assert!(names[1].starts_with("veth"), "{names:?}");
    assert_eq!(names[2], "eth0");
    assert_eq!(result["interfaces"][2]["sandbox"], pod.path());
    assert_eq!(result["ips"], golden["ips"]);
    assert_eq!(result["routes"], golden["routes"]);

    // The kernel agrees: eth0 in the pod holds the addresses, with routes to
    // both cluster networks, at flannel's MTU.
    assert_eq!(
        addresses(&pod, "eth0"),
        ["10.244.5.2/24", "fd00:10:244:5::2/64"]
    );
    assert!(route_dsts(&pod, "-4").contains(&"10.244.0.0/16".to_owned()));
    assert!(route_dsts(&pod, "-6").contains(&"fd00:10:244::/56".to_owned()));
    assert_eq!(pod.ip_json(&["link", "show", "eth0"])[0]["mtu"], 1450);
    assert_eq!(
        addresses(&node.ns, "cni0"),
        ["10.244.5.1/24", "fd00:10:244:5::1/64"]
    );

    // The saved configuration is flannel's golden one plus this test's
    // host-local dataDir.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(node.data_dir().join("pod1")).unwrap()).unwrap();
    let mut expected: Value =
        serde_json::from_str(include_str!("golden/cni-delegate-dualstack.json")).unwrap();
    expected["ipam"]["dataDir"] = json!(node.ipam_dir());
    assert_eq!(saved, expected);

    // CHECK, with the result the runtime cached.
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    node.run("CHECK", "pod1", Some(&pod), check.to_string().as_bytes())
        .success();
    // ... and CHECK notices a route that went away.
    common::ip(&["-n", &pod.name, "route", "del", "10.244.0.0/16"]);
    let e = node
        .run("CHECK", "pod1", Some(&pod), check.to_string().as_bytes())
        .error();
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .starts_with("delegate bridge failed: "),
        "{e}"
    );

    let out = node.del("pod1", Some(&pod), &conf).success();
    assert_eq!(out.stdout, "");
    assert!(
        pod.ip_json(&["link", "show", "type", "veth"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(node.ns.veths().is_empty());
    assert!(node.reserved_ips().is_empty());
    assert!(!node.data_dir().join("pod1").exists());
    // DEL again, and DEL after the pod's namespace is gone: both succeed.
    node.del("pod1", Some(&pod), &conf).success();
    node.del("pod1", None, &conf).success();
}

#[test]
fn a_delegate_failing_after_ipam_leaks_nothing() {
    require_root();
    let node = Node::new(DUAL_STACK_ENV);
    let pod = Netns::new();
    // A route through a gateway the pod cannot reach: bridge creates the
    // veth and host-local hands out the addresses, then the route fails.
    let conf = node.conf(json!({"ipam": {
        "dataDir": node.ipam_dir(),
        "routes": [{"dst": "198.51.100.0/24", "gw": "203.0.113.1"}],
    }}));
    let e = node.add("pod1", &pod, &conf).error();
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.starts_with("delegate bridge failed: "), "{e}");
    assert!(node.reserved_ips().is_empty(), "{:?}", node.reserved_ips());
    assert!(node.ns.veths().is_empty(), "{:?}", node.ns.veths());
    assert!(
        pod.ip_json(&["link", "show", "type", "veth"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(!node.data_dir().join("pod1").exists());
}

#[test]
fn a_missing_delegate_is_reported_and_nothing_is_left() {
    require_root();
    let node = Node::new(DUAL_STACK_ENV);
    let pod = Netns::new();
    let conf = node.conf(json!({"delegate": {"type": "nonexistent"}}));
    let e = node.add("pod1", &pod, &conf).error();
    assert_eq!(e["code"], 7);
    assert!(!node.data_dir().join("pod1").exists());
    assert!(node.reserved_ips().is_empty());
}

/// A node moving from flannel to weft: the pod was wired by flannel's
/// plugin, whose saved file (pretty-printed here, as in the golden capture)
/// is all weft has to delete it with.
#[test]
fn deletes_a_pod_made_by_flannels_plugin() {
    require_root();
    let node = Node::new(DUAL_STACK_ENV);
    let pod = Netns::new();
    let mut saved: Value =
        serde_json::from_str(include_str!("golden/cni-delegate-dualstack.json")).unwrap();
    saved["ipam"]["dataDir"] = json!(node.ipam_dir());
    let saved = serde_json::to_string_pretty(&saved).unwrap();
    // What flannel's plugin did: save, then run bridge with those bytes.
    std::fs::create_dir_all(node.data_dir()).unwrap();
    std::fs::write(node.data_dir().join("flannelpod"), &saved).unwrap();
    let env = [
        ("CNI_COMMAND", "ADD".to_owned()),
        ("CNI_CONTAINERID", "flannelpod".to_owned()),
        ("CNI_NETNS", pod.path()),
        ("CNI_IFNAME", "eth0".to_owned()),
        ("CNI_PATH", common::PLUGINS.to_owned()),
    ];
    common::run_in(
        &node.ns,
        &format!("{}/bridge", common::PLUGINS),
        &env,
        saved.as_bytes(),
    )
    .success();
    assert_eq!(node.reserved_ips().len(), 2);

    node.del("flannelpod", Some(&pod), &node.conf(json!({})))
        .success();
    assert!(node.reserved_ips().is_empty());
    assert!(node.ns.veths().is_empty());
    assert!(!node.data_dir().join("flannelpod").exists());
}

#[test]
fn two_hundred_pods_leave_no_addresses_and_no_veths() {
    require_root();
    const PODS: usize = 200;
    let node = Node::new(DUAL_STACK_ENV);
    let conf = node.conf(json!({}));
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new()).collect();
    let started = Instant::now();
    for (i, pod) in pods.iter().enumerate() {
        node.add(&format!("pod{i}"), pod, &conf).success();
    }
    let added = started.elapsed();
    assert_eq!(node.reserved_ips().len(), 2 * PODS);
    assert_eq!(node.ns.veths().len(), PODS);
    for (i, pod) in pods.iter().enumerate() {
        node.del(&format!("pod{i}"), Some(pod), &conf).success();
    }
    eprintln!(
        "{PODS} pods: ADD {:?} each, DEL {:?} each (mean)",
        added / PODS as u32,
        (started.elapsed() - added) / PODS as u32
    );
    assert!(
        node.reserved_ips().is_empty(),
        "leaked: {:?}",
        node.reserved_ips()
    );
    assert!(
        node.ns.veths().is_empty(),
        "leftover veths: {:?}",
        node.ns.veths()
    );
    assert_eq!(std::fs::read_dir(node.data_dir()).unwrap().count(), 0);
}

/// ADD latency with the real plugins (the README's numbers), next to bridge
/// run directly with the same configuration, interleaved so that load on
/// the machine weighs on both alike. Not part of the suite:
/// `cargo test -p weft-cni --release --test netns -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, run by hand"]
fn add_latency() {
    require_root();
    const RUNS: usize = 50;
    let node = Node::new(DUAL_STACK_ENV);
    let conf = node.conf(json!({}));
    let mut delegate: Value =
        serde_json::from_str(include_str!("golden/cni-delegate-dualstack.json")).unwrap();
    delegate["ipam"]["dataDir"] = json!(node.ipam_dir());
    let delegate = delegate.to_string();
    let bridge = format!("{}/bridge", common::PLUGINS);
    let direct = |command: &str, id: &str, pod: &Netns| {
        let env = [
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", id.to_owned()),
            ("CNI_NETNS", pod.path()),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_PATH", common::PLUGINS.to_owned()),
        ];
        common::run_in(&node.ns, &bridge, &env, delegate.as_bytes()).success();
    };
    let timed = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let pods: Vec<(Netns, Netns)> = (0..RUNS).map(|_| (Netns::new(), Netns::new())).collect();
    let (mut weft, mut plain, mut weft_del, mut plain_del) = (vec![], vec![], vec![], vec![]);
    for (i, (a, b)) in pods.iter().enumerate() {
        weft.push(timed(&mut || {
            drop(node.add(&format!("w{i}"), a, &conf).success())
        }));
        plain.push(timed(&mut || direct("ADD", &format!("b{i}"), b)));
    }
    for (i, (a, b)) in pods.iter().enumerate() {
        weft_del.push(timed(&mut || {
            drop(node.del(&format!("w{i}"), Some(a), &conf).success())
        }));
        plain_del.push(timed(&mut || direct("DEL", &format!("b{i}"), b)));
    }
    // The plugin alone: VERSION never execs a delegate.
    let mut version: Vec<Duration> = (0..RUNS)
        .map(|_| timed(&mut || drop(node.run("VERSION", "", None, b"").success())))
        .collect();
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "median of {RUNS}: ADD {:?} (bridge alone {:?}), DEL {:?} (bridge alone {:?}), VERSION {:?}",
        median(&mut weft),
        median(&mut plain),
        median(&mut weft_del),
        median(&mut plain_del),
        median(&mut version),
    );
}
