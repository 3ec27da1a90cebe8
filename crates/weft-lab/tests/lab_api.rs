//! The library API that end-to-end tests build on: agents killed and
//! started, pods added and removed, code run inside a lab namespace, and
//! the etcd store. Uses the real `weftd` and `flannel` of the workspace
//! (`cargo build --workspace` puts them in the target directory).
//!
//! Needs root (network namespaces): fails without it (the `unprivileged`
//! nextest profile skips it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use weft_lab::{Backend, Family, Lab, LabSpec, Signal, StoreKind, default_bin_dir, netns_path};

fn prerequisites() -> Option<()> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces): run it as root (CI does: scripts/test.sh), or skip these tests visibly with `cargo nextest run --workspace --profile unprivileged`"
    );
    let dir = default_bin_dir().unwrap();
    for bin in ["weftd", "flannel"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the workspace first (`cargo build --workspace`), then rerun",
            dir.join(bin).display()
        );
    }
    Some(())
}

/// Removes the lab when the test ends, passed or not.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Lab::down_by_name(&self.0);
    }
}

fn spec(test: &str) -> (LabSpec, Cleanup) {
    let name = format!("a{}-{test}", std::process::id());
    let mut spec = LabSpec::new(&name).unwrap();
    spec.backend = Backend::None;
    spec.nodes = 2;
    (spec, Cleanup(name))
}

#[test]
fn agents_and_pods_through_the_library() {
    if prerequisites().is_none() {
        return;
    }
    let (spec, _cleanup) = spec("api");
    let mut lab = Lab::up(&spec).unwrap();
    let subnet2 = lab.node("node2").unwrap().subnets.clone();
    assert_eq!(subnet2.len(), 1);

    // A crash and a restart: the agent comes back with the same lease.
    lab.kill_agent("node2", Signal::SIGKILL).unwrap();
    assert!(!lab.agent_running("node2").unwrap());
    assert!(
        lab.kill_agent("node2", Signal::SIGKILL).is_err(),
        "nothing left to kill"
    );
    let status = lab.start_agent("node2").unwrap();
    assert!(status.ready);
    assert_eq!(status.subnets, subnet2);
    assert!(lab.start_agent("node2").is_err(), "one agent per node");

    // node1's agent sees node2 as a peer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.agent_status("node1").unwrap().has_peer_with(subnet2[0]) {
        assert!(Instant::now() < deadline, "{:?}", lab.agent_status("node1"));
        // Poll interval of the wait for node1's status to list the peer.
        std::thread::sleep(Duration::from_millis(100));
    }

    // A second pod on node1, reachable from the first.
    let pod = lab.add_pod("node1").unwrap();
    assert_eq!(pod.name, "node1-pod2");
    let subnet1 = lab.node("node1").unwrap().subnet(Family::V4).unwrap();
    let addr = pod.address(Family::V4).unwrap();
    assert!(subnet1.contains(&addr), "{addr} outside {subnet1}");
    let report = lab.check().unwrap();
    for pair in &report.pairs {
        if pair.from.starts_with("node1-") && pair.to.starts_with("node1-") {
            assert!(pair.icmp && pair.tcp, "{pair:?}");
        }
    }

    // Code run in a pod's namespace can bind the pod's address; the
    // caller's namespace has no such address.
    let bind = move || Ok(TcpListener::bind(SocketAddr::new(addr, 0)).is_ok());
    assert!(lab.in_netns("node1-pod2", bind).unwrap());
    assert!(!bind().unwrap());

    lab.remove_pod("node1-pod2").unwrap();
    assert!(!netns_path(&pod.netns).exists());
    assert_eq!(lab.pods().len(), 2);

    let reopened = Lab::open(lab.name().as_str()).unwrap();
    assert_eq!(reopened.state(), lab.state());
    let name = lab.name().to_string();
    let report = lab.down().unwrap();
    assert!(report.warnings.is_empty(), "{report:?}");
    assert!(Lab::open(&name).is_err());
}

#[test]
fn etcd_store_on_the_underlay() {
    if prerequisites().is_none() {
        return;
    }
    let (mut spec, _cleanup) = spec("etcd");
    spec.store = StoreKind::Etcd;
    let lab = Lab::up(&spec).unwrap();
    let subnets: Vec<_> = lab.nodes().iter().map(|n| n.subnets.clone()).collect();
    assert_ne!(subnets[0], subnets[1]);
    assert!(
        lab.state()
            .store
            .describe()
            .starts_with("etcd (http://192.0.2.250:2379")
    );
    // Nodes reach etcd over the underlay.
    let reach = lab
        .in_netns("node2", || {
            Ok(TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::new(192, 0, 2, 250), 2379)),
                Duration::from_secs(2),
            )
            .is_ok())
        })
        .unwrap();
    assert!(reach);
    let report = lab.down().unwrap();
    assert!(
        report.processes.iter().any(|p| p.starts_with("etcd pid")),
        "{report:?}"
    );
}
