//! Nodes in separate clouds behind 1:1 NAT (issue 24): `weft lab up
//! --clouds 2` puts node1 and node3 in cloud 1 (172.16.1.0/24), node2 and
//! node4 in cloud 2 (172.16.2.0/24), each cloud behind a router mapping
//! its nodes to public addresses on the shared "internet" segment (the
//! underlay bridge). Agents run with `--public-ip` and `--iface` as K3s's
//! multicloud guide configures them (docs/multicloud.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use common::{TestLab, finding, lab_exec, lab_exec_ok, require_root, weft_check};
use weft_lab::{Backend, Lab, LabSpec};

fn clouds_lab(name: &str, backend: Backend) -> TestLab {
    TestLab::up_with(name, backend, |spec| {
        spec.nodes = 4;
        spec.clouds = 2;
    })
}

/// `weft check --public-ip` on node1 with `backend`: its NAT finding.
fn nat_finding(lab: &TestLab, backend: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("net-conf.json");
    std::fs::write(
        &conf,
        format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"{backend}"}}}}"#),
    )
    .unwrap();
    let report = weft_check(
        lab,
        "node1",
        &conf,
        &["--iface", "eth0", "--public-ip", "192.0.2.1"],
    );
    finding(&report, "NAT")
}

/// Every line tcpdump prints on the internet segment while `during` runs.
fn internet_capture(lab: &TestLab, during: impl FnOnce()) -> Vec<String> {
    let netns = lab.lab().netns_of("underlay").unwrap();
    let mut dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns,
            "tcpdump",
            "-n",
            "-l",
            "--immediate-mode",
            "-i",
            "br0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on br0" once it captures; immediate mode
    // hands it each packet at once (buffered ones are lost at SIGINT).
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
        line.clear();
    }
    let out = dump.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    during();
    let pid = nix::unistd::Pid::from_raw(dump.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    dump.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn wireguard_crosses_the_clouds_and_nothing_crosses_in_clear() {
    require_root();
    let lab = clouds_lab("mc-wg", Backend::Wireguard);
    let node1 = lab.lab().node("node1").unwrap();
    assert_eq!(node1.underlay_ip.to_string(), "172.16.1.1");
    assert_eq!(
        node1.public_ip.map(|p| p.to_string()).as_deref(),
        Some("192.0.2.1")
    );

    // The clouds share no network: another cloud's private address is
    // unreachable; its public one answers through the NAT.
    assert!(
        !lab_exec(&lab, "node1", &["ping", "-c", "1", "-W", "1", "172.16.2.2"])
            .status
            .success()
    );
    assert!(
        lab_exec(&lab, "node1", &["ping", "-c", "1", "-W", "2", "192.0.2.2"])
            .status
            .success()
    );

    let lines = internet_capture(&lab, || lab.assert_matrix());
    let wireguard = lines.iter().filter(|l| l.contains(".51820 ")).count();
    assert!(
        wireguard > 0,
        "no WireGuard packet seen on the internet segment: {lines:#?}"
    );
    let clear: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("10.244.") || l.contains("172.16."))
        .collect();
    assert!(
        clear.is_empty(),
        "pod or private addresses crossed the internet in clear: {clear:#?}"
    );

    // Peers are known by their public addresses only.
    let endpoints = lab_exec_ok(&lab, "node1", &["wg", "show", "flannel-wg", "endpoints"]);
    for line in endpoints.lines() {
        let endpoint = line.split('\t').nth(1).unwrap_or_default();
        assert!(endpoint.starts_with("192.0.2."), "{endpoints}");
    }

    let nat = nat_finding(&lab, "wireguard");
    assert_eq!(nat["level"], "ok", "{nat}");
}

#[test]
fn vxlan_crosses_a_one_to_one_nat_and_check_warns_it_is_clear() {
    require_root();
    let lab = clouds_lab("mc-vx", Backend::Vxlan);
    lab.assert_matrix();
    let nat = nat_finding(&lab, "vxlan");
    assert_eq!(nat["level"], "warn", "{nat}");
    assert!(nat["seen"].as_str().unwrap().contains("in clear"), "{nat}");
    let host_gw = nat_finding(&lab, "host-gw");
    assert_eq!(host_gw["level"], "fail", "{host_gw}");
}

#[test]
fn host_gw_behind_nat_is_refused_with_flannels_reason() {
    require_root();
    let _ = Lab::down_by_name("mc-hg");
    let mut spec = LabSpec::new("mc-hg").unwrap();
    spec.backend = Backend::HostGw;
    spec.nodes = 2;
    spec.clouds = 2;
    let err = match Lab::up(&spec) {
        Ok(lab) => {
            let _ = lab.down();
            panic!("host-gw came up behind NAT");
        }
        Err(e) => e.to_string(),
    };
    let _ = Lab::down_by_name("mc-hg");
    assert!(err.contains("PublicIP differs from interface IP"), "{err}");
}

/// An elastic IP moved: `weft lab renumber node1` gives node1 a new private
/// address and its router a new public mapping (192.0.2.101), while the
/// agent keeps its old --public-ip. node1's packets still reach node2
/// (WireGuard roams to the new mapping) and node2's `weft status` names the
/// stale lease address; `weft public-ip` on node1 publishes the new one,
/// and node2 then finds node1 where its lease says, with no restart.
#[test]
fn a_moved_public_mapping_is_seen_by_peers_and_published_without_a_restart() {
    require_root();
    let mut lab = TestLab::up_with("mc-eip", Backend::Wireguard, |spec| {
        spec.nodes = 2;
        spec.clouds = 2;
    });
    let pid = lab.lab().node("node1").unwrap().pid;
    let moved = lab.lab_mut().renumber("node1").unwrap();
    assert_eq!(moved.to.to_string(), "172.16.1.101");
    assert_eq!(
        moved.public.map(|p| p.to_string()).as_deref(),
        Some("192.0.2.101")
    );

    let node1_row = |lab: &TestLab| -> serde_json::Value {
        let status = common::agent::weft_status_json(lab, "node2");
        let subnet = lab.lab().node("node1").unwrap().subnets[0].to_string();
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["subnets"][0] == subnet.as_str())
            .cloned()
            .unwrap_or_default()
    };
    common::wait_until(
        std::time::Duration::from_secs(30),
        "node2 to find node1 at its new public address",
        || {
            lab_exec(
                &lab,
                "node1-pod1",
                &["ping", "-c", "1", "-W", "1", &lab.pod_ip("node2-pod1")],
            );
            node1_row(&lab)["reached_at"] == "192.0.2.101:51820"
        },
    );

    let socket = lab.lab().node("node1").unwrap().dir.join("weftd.sock");
    lab_exec_ok(
        &lab,
        "node1",
        &[
            env!("CARGO_BIN_EXE_weft"),
            "public-ip",
            "192.0.2.101",
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    common::wait_until(
        std::time::Duration::from_secs(30),
        "node1's lease to say 192.0.2.101",
        || {
            let row = node1_row(&lab);
            row["public_ip"] == "192.0.2.101" && row["reached_at"].is_null()
        },
    );
    assert_eq!(
        lab.lab().node("node1").unwrap().pid,
        pid,
        "the agent was restarted"
    );
    lab.assert_matrix();
}
