//! `weft lab`, run as the real binary with the real `weftd` and `flannel`
//! next to it (`cargo build --workspace` puts them there).
//!
//! Backend `none` leases subnets but moves no packets between nodes, so
//! these tests check what it can show: distinct subnets, pod addresses
//! inside them, same-node reachability, exec, restart, and a teardown
//! that leaves nothing behind. The cross-node matrix per backend belongs
//! to the dataplane's end-to-end tests; one wireguard lab checks what the
//! CLI says about the WireGuard path.
//!
//! Needs root (network namespaces): fails without it (the `unprivileged`
//! nextest profile skips it). Every lab gets a name unique to this run, so
//! the tests run in parallel with each other and with anybody's `weft` lab.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::Value;

#[path = "lab_cli/support.rs"]
mod support;

use support::*;

#[test]
fn lab_lifecycle_with_backend_none() {
    prerequisites();
    let lab = LabName::new("life");
    let name = lab.0.as_str();
    lab.up_none(2, 2);

    // Nodes exist, each with its own subnet, as the agents leased them.
    let state = lab.state();
    assert_eq!(state["backend"], "none");
    let (n1, n2) = (node(&state, "node1"), node(&state, "node2"));
    assert_eq!(n1["underlay_ip"], "192.0.2.1");
    assert_ne!(subnet_of(n1), subnet_of(n2), "{state:#}");
    for n in [n1, n2] {
        assert!(
            Path::new("/run/netns")
                .join(n["netns"].as_str().unwrap())
                .exists()
        );
        let env = PathBuf::from(n["dir"].as_str().unwrap()).join("subnet.env");
        let env = std::fs::read_to_string(env).unwrap();
        let first_host = subnet_of(n).hosts().next().unwrap();
        assert!(
            env.contains(&format!("FLANNEL_SUBNET={first_host}/")),
            "{env}"
        );
    }
    // Pods got addresses from their node's subnet through the CNI plugin.
    let pods = state["pods"].as_array().unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["node1-pod1", "node1-pod2", "node2-pod1", "node2-pod2"]
    );
    for pod in pods {
        let address: IpNet = pod["addresses"][0].as_str().unwrap().parse().unwrap();
        let subnet = subnet_of(node(&state, pod["node"].as_str().unwrap()));
        assert!(subnet.contains(&address.addr()), "{pod} outside {subnet}");
    }

    // The matrix: same-node pairs pass; with backend none nothing routes
    // between nodes, so cross-node pairs fail and the exit status says so.
    let out = weft(&["lab", "check", "--name", name, "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 12, "{report:#}");
    for pair in pairs {
        let node_of = |pod: &Value| pod.as_str().unwrap().split('-').next().unwrap().to_owned();
        assert_eq!(pair["family"], "ipv4");
        let same_node = node_of(&pair["from"]) == node_of(&pair["to"]);
        assert_eq!(pair["icmp"], same_node, "{pair}");
        assert_eq!(pair["tcp"], same_node, "{pair}");
    }
    assert_eq!(report["ok"], false);
    assert!(!out.status.success());

    // exec runs inside the namespace and forwards the exit status.
    let out = weft_ok(&[
        "lab", "exec", "--name", name, "node1", "--", "ip", "-o", "addr", "show", "eth0",
    ]);
    assert!(
        text(&out.stdout).contains("inet 192.0.2.1/24"),
        "{}",
        text(&out.stdout)
    );
    let out = weft(&[
        "lab",
        "exec",
        "--name",
        name,
        "node2-pod1",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));

    // restart keeps the node's subnet.
    let old_pid = n1["pid"].as_u64().unwrap();
    weft_ok(&["lab", "restart", "--name", name, "node1"]);
    let after = lab.state();
    let n1_after = node(&after, "node1");
    assert_eq!(subnet_of(n1_after), subnet_of(n1));
    assert_ne!(n1_after["pid"].as_u64().unwrap(), old_pid);
    assert_eq!(agents_of(name).len(), 2);

    // down removes everything, and again is fine.
    lab.down_leaves_nothing();
    let again = weft_ok(&["lab", "down", "--name", name]);
    assert!(
        text(&again.stdout).contains("nothing to remove"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn up_replaces_a_lab_of_the_same_name() {
    prerequisites();
    let lab = LabName::new("twice");
    let name = lab.0.as_str();
    lab.up_none(1, 1);
    let first: Vec<u32> = agents_of(name);
    assert_eq!(first.len(), 1);

    lab.up_none(1, 1);
    let second = agents_of(name);
    assert_eq!(second.len(), 1, "the first lab's agent must be gone");
    assert_ne!(first, second);
    let state = lab.state();
    assert_eq!(state["pods"].as_array().unwrap().len(), 1);
    lab.first_pod_answers();
}

/// Issue 4, "leftovers of a crashed lab are removed first": the previous
/// lab's agents died by SIGKILL, so only its namespaces, state directory,
/// stale sockets and pid files of dead processes remain. `up` under the
/// same name cleans them and starts a working lab; `down` leaves nothing.
#[test]
fn up_over_a_crashed_lab_of_the_same_name() {
    prerequisites();
    let lab = LabName::new("crashed");
    let name = lab.0.as_str();
    lab.up_none(2, 1);
    let mut namespaces = netns_of(name);
    namespaces.sort();
    let first = agents_of(name);
    assert_eq!(first.len(), 2, "{first:?}");
    for pid in &first {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !agents_of(name).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed agents are still alive"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The crash left its namespaces and files behind.
    assert_eq!(netns_of(name).len(), namespaces.len());
    assert!(
        Path::new("/run/weft-lab")
            .join(name)
            .join("lab.json")
            .exists()
    );

    lab.up_none(2, 1);
    let second = agents_of(name);
    assert_eq!(second.len(), 2, "one live agent per node: {second:?}");
    assert!(
        second.iter().all(|pid| !first.contains(pid)),
        "old agents {first:?}, now {second:?}"
    );
    let mut again = netns_of(name);
    again.sort();
    assert_eq!(again, namespaces, "no duplicate or missing namespaces");
    lab.first_pod_answers();
    lab.down_leaves_nothing();
}

#[test]
fn errors_name_the_problem() {
    prerequisites();
    let out = weft(&["lab", "up", "--name", "Bad_Name"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("lab name \"Bad_Name\" is not usable"),
        "{}",
        text(&out.stderr)
    );

    let lab = LabName::new("bins");
    let out = weft(&["lab", "up", "--name", &lab.0, "--bin-dir", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cargo build --workspace"),
        "{}",
        text(&out.stderr)
    );

    let out = weft(&["lab", "check", "--name", &lab.0]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no lab named"),
        "{}",
        text(&out.stderr)
    );
}

/// `GET path` from the health server a node's agent serves on port 8081,
/// inside that node's namespace.
fn health_get(lab: &str, node: &str, path: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> weft_lab::LabError {
        move |e| weft_lab::LabError::io(what, e)
    }
    let opened = weft_lab::Lab::open(lab).map_err(|e| e.to_string())?;
    let path = path.to_owned();
    opened
        .in_netns(node, move || {
            let mut s = std::net::TcpStream::connect("127.0.0.1:8081")
                .map_err(io("connect to the health port"))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .map_err(io("send the request"))?;
            let mut raw = String::new();
            s.read_to_string(&mut raw).map_err(io("read the answer"))?;
            Ok(raw)
        })
        .map_err(|e| e.to_string())
}

/// The wireguard backend: `weft lab up` and `weft lab check` say which
/// implementation each node's agent runs, and it is what the agent's own
/// `weft_wireguard_path` metric says. The agents are told to use the
/// userspace path, so the answer does not depend on this machine's kernel
/// modules.
#[test]
fn wireguard_lab_names_the_path_of_each_agent() {
    prerequisites();
    let lab = LabName::new("wgpath");
    let name = lab.0.as_str();
    let summary = lab.up_wireguard(&[
        "--agent-arg=--wireguard-path=userspace",
        "--agent-arg=--healthz-port=8081",
    ]);
    let header = row(&summary, "node");
    assert!(header.trim_end().ends_with("wireguard"), "{summary}");
    for node in ["node1", "node2"] {
        let line = row(&summary, node);
        assert!(line.trim_end().ends_with(" userspace"), "{summary}");
    }

    let matrix = lab.check();
    assert!(
        matrix
            .lines()
            .any(|l| l == "wireguard: node1 userspace, node2 userspace"),
        "{matrix}"
    );

    // The agent's metric says the same. It is refreshed every 2 s, so it
    // may lag the status socket just after the start: wait for it.
    let wanted = "weft_wireguard_path{path=\"userspace\"} 1";
    for node in ["node1", "node2"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let metrics = loop {
            let got = health_get(name, node, "/metrics");
            if let Ok(raw) = &got
                && raw.lines().any(|l| l == wanted)
            {
                break raw.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{node}: no {wanted:?} on /metrics in 15 s; last answer: {got:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert!(
            !metrics.contains("weft_wireguard_path{path=\"kernel\"}"),
            "{node}: {metrics}"
        );
    }
}

/// `weft lab up --clouds 2` and `weft lab check` show each node's private
/// address, cloud and public (1:1 NAT) address, and `--clouds` with IPv6
/// is refused naming why.
#[test]
fn clouds_lab_shows_both_addresses_of_each_node() {
    prerequisites();
    let lab = LabName::new("clouds");
    let name = lab.0.as_str();
    let summary = lab.up_wireguard(&["--clouds", "2"]);
    let cells: Vec<&str> = row(&summary, "node2").split_whitespace().collect();
    assert_eq!(cells[2..5], ["2", "172.16.2.2", "192.0.2.2"], "{summary}");

    let matrix = lab.check();
    assert!(
        matrix.lines().any(|l| l
            == "clouds: node1 172.16.1.1 (public 192.0.2.1), node2 172.16.2.2 (public 192.0.2.2)"),
        "{matrix}"
    );

    let out = weft(&[
        "lab",
        "up",
        "--name",
        name,
        "--clouds",
        "2",
        "--ip-family",
        "dual",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("IPv4 1:1 NAT"),
        "{}",
        text(&out.stderr)
    );
}
