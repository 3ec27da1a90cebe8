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

/// Every flag flanneld defines (flannel-io/flannel main.go), without the
/// leading dashes: a flanneld-mode agent must get nothing else.
const FLANNELD_FLAGS: &[&str] = &[
    "etcd-endpoints",
    "etcd-prefix",
    "etcd-keyfile",
    "etcd-certfile",
    "etcd-cafile",
    "etcd-username",
    "etcd-password",
    "iface",
    "iface-regex",
    "iface-can-reach",
    "subnet-file",
    "public-ip",
    "public-ipv6",
    "subnet-lease-renew-margin",
    "ip-masq",
    "ip-masq-fully-random-disable",
    "kube-subnet-mgr",
    "kube-api-url",
    "kube-annotation-prefix",
    "kubeconfig-file",
    "healthz-ip",
    "healthz-port",
    "iptables-resync",
    "iptables-forward-rules",
    "ip-blackhole-route",
    "net-config-path",
    "set-node-network-unavailable",
];

/// A lab whose agents run flanneld's command line, as the benchmark runs a
/// real flanneld beside weft. weftd stands in for flanneld (it takes
/// flanneld's command line): the lab's plumbing — flanneld's flags only,
/// readiness from subnet.env, the process found by its binary's name — is
/// what is under test, and pods on two nodes reach each other through it.
#[test]
fn flanneld_agents_get_flanneld_flags_only() {
    if prerequisites().is_none() {
        return;
    }
    let (mut spec, _cleanup) = spec("flannel");
    spec.store = StoreKind::Etcd;
    spec.backend = Backend::Vxlan;
    let stand_in = default_bin_dir().unwrap().join("weftd");
    spec.flanneld = Some(stand_in.clone());
    let mut lab = Lab::up(&spec).unwrap();

    let pid = lab.node("node1").unwrap().pid.unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(args[0], stand_in.display().to_string());
    assert!(
        args.iter().any(|a| a.starts_with("--subnet-file=")),
        "{args:?}"
    );
    for a in &args[1..] {
        let name = a.trim_start_matches('-').split('=').next().unwrap();
        assert!(
            FLANNELD_FLAGS.contains(&name),
            "{a} is not a flanneld flag: {args:?}"
        );
    }

    // The subnets come from subnet.env, one per node, distinct.
    let subnet1 = lab.node("node1").unwrap().subnets.clone();
    let subnet2 = lab.node("node2").unwrap().subnets.clone();
    assert_eq!(subnet1.len(), 1);
    assert_ne!(subnet1, subnet2);
    assert_eq!(lab.agent_status("node2").unwrap().subnets, subnet2);

    // Pods on both nodes reach each other once the agents programmed
    // their peers (readiness is subnet.env, before the peers are in).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = lab.check().unwrap();
        if report.ok {
            assert!(
                report
                    .pairs
                    .iter()
                    .any(|p| p.from.starts_with("node1-") && p.to.starts_with("node2-")),
                "{report:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{report:?}");
    }

    // The agent is found by its binary's name: stopped, then started
    // again with the same lease (flanneld finds it by its public IP).
    lab.kill_agent("node2", Signal::SIGTERM).unwrap();
    assert!(!lab.agent_running("node2").unwrap());
    let status = lab.start_agent("node2").unwrap();
    assert!(status.ready);
    assert_eq!(status.subnets, subnet2);
    assert!(lab.agent_running("node2").unwrap());

    // Switching to weftd waits until no agent runs.
    assert!(lab.set_flanneld(None).is_err());
    let report = lab.down().unwrap();
    assert!(
        report
            .processes
            .iter()
            .filter(|p| p.starts_with("weftd pid"))
            .count()
            == 2,
        "{report:?}"
    );
}

/// flanneld has no local store: a lab asking for both is refused before
/// anything is built.
#[test]
fn flanneld_agents_need_etcd_or_kube() {
    let mut spec = LabSpec::new("flannel-local").unwrap();
    spec.flanneld = Some(default_bin_dir().unwrap().join("weftd"));
    let err = spec.validate().unwrap_err().to_string();
    assert!(err.contains("no local store"), "{err}");
}
