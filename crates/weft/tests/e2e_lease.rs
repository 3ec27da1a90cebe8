//! Holding a lease through what operators and outages do to the store
//! (issues 3 and 7): a lease deleted under a running agent, an agent
//! started while etcd is down, and a WireGuard key kept across a restart
//! in Kubernetes mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestLab, lab_exec_ok, node_from_api, one_line, require_root, wait_until};
use weft_core::etcd_key;
use weft_core::lease::LeaseSubnets;
use weft_lab::{Backend, Lab, Signal, StoreKind};

const ENDPOINT: &str = "--endpoints=http://192.0.2.250:2379";

fn etcd_lab(name: &str) -> TestLab {
    TestLab::up_with(name, Backend::Vxlan, |spec| spec.store = StoreKind::Etcd)
}

/// `node`'s lease key in etcd, as flannel names it.
fn lease_key(lab: &TestLab, node: &str) -> String {
    let subnet = lab.lab().node(node).unwrap().subnets[0];
    etcd_key::lease_key(
        etcd_key::DEFAULT_PREFIX,
        &LeaseSubnets {
            v4: weft_core::prefix::as_v4(subnet),
            v6: None,
        },
    )
}

/// The value at `key` in the lab's etcd, if any.
fn etcd_get(lab: &TestLab, key: &str) -> Option<String> {
    let out = lab.ok(
        "store",
        &["etcdctl", ENDPOINT, "get", key, "--print-value-only"],
    );
    let value = out.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// What `node`'s agent logged since it was last started by the lab.
fn current_log(lab: &TestLab, node: &str) -> String {
    let path = lab.lab().node(node).unwrap().dir.join("weftd.log");
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let marker = format!("=== weft lab: starting weftd on {node}");
    match log.rfind(&marker) {
        Some(at) => log[at..].to_owned(),
        None => log,
    }
}

/// `FLANNEL_SUBNET` of `node`'s subnet.env.
fn flannel_subnet(lab: &TestLab, node: &str) -> String {
    let env =
        std::fs::read_to_string(lab.lab().node(node).unwrap().dir.join("subnet.env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .unwrap_or_else(|| panic!("no FLANNEL_SUBNET in {env}"))
        .to_owned()
}

/// The gateway form subnet.env uses for a lease `10.244.3.0/24`: `10.244.3.1/24`.
fn gateway_of(subnet: &str) -> String {
    let (net, len) = subnet.split_once('/').unwrap();
    let mut octets: Vec<u8> = net.split('.').map(|o| o.parse().unwrap()).collect();
    octets[3] += 1;
    let ip: Vec<String> = octets.iter().map(u8::to_string).collect();
    format!("{}/{len}", ip.join("."))
}

#[test]
fn a_lease_deleted_by_an_operator_is_taken_again_loudly() {
    require_root();
    let lab = etcd_lab("l-gone");
    let subnet = lab.subnet("node1");
    let key = lease_key(&lab, "node1");
    let before = etcd_get(&lab, &key).expect("node1's lease is in etcd");
    assert!(before.contains("192.0.2.1"), "{before}");

    // The operator's mistake: `etcdctl del` of a live node's lease.
    let deleted = lab.ok("store", &["etcdctl", ENDPOINT, "del", &key]);
    assert_eq!(deleted.trim(), "1", "etcdctl del: {deleted}");

    wait_until(
        Duration::from_secs(20),
        "node1 to hold its lease again",
        || etcd_get(&lab, &key).is_some(),
    );
    let after = etcd_get(&lab, &key).unwrap();
    assert!(
        after.contains("\"PublicIP\":\"192.0.2.1\""),
        "the new lease is node1's: {after}"
    );

    // Loud: an ERROR naming the lost key and a WARN naming the subnet
    // taken again, in the agent's log.
    wait_until(
        Duration::from_secs(10),
        "node1 to log the lease taken again",
        || current_log(&lab, "node1").contains("lease taken again with the same subnet"),
    );
    let log = current_log(&lab, "node1");
    // One line per loss.
    let lost = one_line(&log, &["our lease vanished from the store"]);
    assert!(lost.contains("ERROR"), "{lost}");
    assert!(lost.contains(&key), "{lost}");
    let again = log
        .lines()
        .find(|l| l.contains("lease taken again with the same subnet"))
        .unwrap();
    assert!(again.contains("WARN"), "{again}");
    assert!(again.contains(&subnet), "{again}");

    // The node kept its subnet: status, subnet.env and the store agree.
    let status = lab.lab().agent_status("node1").unwrap();
    assert!(status.ready);
    assert_eq!(status.subnets[0].to_string(), subnet);
    assert_eq!(flannel_subnet(&lab, "node1"), gateway_of(&subnet));
    lab.assert_matrix();
}

/// The retry delays ("retrying in 1.1s") of the lines matching `what`.
fn retry_delays(log: &str, what: &str) -> Vec<Duration> {
    log.lines()
        .filter(|l| l.contains(what))
        .map(|l| {
            let tail = l
                .split("retrying in ")
                .nth(1)
                .unwrap_or_else(|| panic!("{l}"));
            let secs = tail.trim().trim_end_matches('s');
            if let Some(ms) = secs.strip_suffix('m') {
                Duration::from_secs_f64(ms.parse::<f64>().unwrap() / 1000.0)
            } else {
                Duration::from_secs_f64(secs.parse().unwrap_or_else(|_| panic!("{l}")))
            }
        })
        .collect()
}

#[test]
fn an_agent_started_while_etcd_is_down_waits_with_backoff_then_serves() {
    require_root();
    let mut lab = etcd_lab("l-down");
    let subnet = lab.subnet("node1");
    lab.lab_mut().kill_agent("node1", Signal::SIGTERM).unwrap();
    lab.lab_mut().stop_store().unwrap();

    // node1's agent starts into the outage; start_agent waits for it to be
    // ready, so it runs on a second handle of the lab.
    let name = lab.lab().name().as_str().to_owned();
    let started = Instant::now();
    let agent = std::thread::spawn(move || Lab::open(&name).unwrap().start_agent("node1"));
    const UNREACHABLE: &str = "etcd is unreachable";
    wait_until(
        Duration::from_secs(20),
        "node1 to retry the unreachable etcd twice",
        || {
            current_log(&lab, "node1")
                .lines()
                .filter(|l| l.contains(UNREACHABLE))
                .count()
                >= 2
        },
    );
    assert!(
        !lab.lab().agent_status("node1").is_ok_and(|s| s.ready),
        "ready without a store"
    );
    let outage = started.elapsed();
    lab.lab_mut().start_store().unwrap();
    let status = agent
        .join()
        .unwrap()
        .expect("node1 becomes ready once etcd is back");
    assert!(status.ready);
    assert_eq!(
        status.subnets[0].to_string(),
        subnet,
        "node1 kept its subnet"
    );

    // One line per wait, each waiting longer: a backoff, not a flood.
    let log = current_log(&lab, "node1");
    let delays = retry_delays(&log, UNREACHABLE);
    assert!(delays.len() >= 2, "{log}");
    let lines_bound = outage.as_secs() as usize + 3;
    assert!(
        delays.len() <= lines_bound,
        "{} retry lines in {outage:?} is a flood:\n{log}",
        delays.len()
    );
    // The first wait is 1 s and the next 2 s (each with up to 20% jitter):
    // without the doubling the second could not reach 1.5 times the first.
    assert!(
        delays[1].as_secs_f64() >= delays[0].as_secs_f64() * 1.5,
        "the wait grows: {delays:?}\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(UNREACHABLE)),
        "{log}"
    );
    assert_eq!(flannel_subnet(&lab, "node1"), gateway_of(&subnet));
    lab.assert_matrix();
}

const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";

/// The PublicKey in `name`'s backend-data annotation, from the API server.
fn published_key(lab: &TestLab, name: &str) -> String {
    let node = node_from_api(lab, name);
    let data = node["metadata"]["annotations"][BACKEND_DATA]
        .as_str()
        .unwrap_or_else(|| panic!("no {BACKEND_DATA} on {name}: {node}"));
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    data["PublicKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no PublicKey in {data}"))
        .to_owned()
}

#[test]
fn kube_mode_keeps_the_wireguard_key_across_a_restart() {
    require_root();
    let mut lab = TestLab::up_with("l-kwg", Backend::Wireguard, |spec| {
        spec.store = StoreKind::Kube;
    });
    let before = published_key(&lab, "node1");
    let device = lab_exec_ok(&lab, "node1", &["wg", "show", "flannel-wg", "public-key"]);
    assert_eq!(device.trim(), before, "the annotation is the device's key");

    lab.lab_mut().restart("node1").unwrap();
    assert_eq!(
        published_key(&lab, "node1"),
        before,
        "a restart published a new WireGuard key"
    );
    let device = lab_exec_ok(&lab, "node1", &["wg", "show", "flannel-wg", "public-key"]);
    assert_eq!(device.trim(), before);
    // node2 still has node1 as a peer under that key.
    let peers = lab_exec_ok(&lab, "node2", &["wg", "show", "flannel-wg", "peers"]);
    assert!(peers.lines().any(|p| p.trim() == before), "{peers}");
    lab.assert_matrix();
}
