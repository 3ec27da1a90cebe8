//! The WireGuard backend end to end (issue 6): the pod matrix and `wg
//! show`, no plaintext on the wire, interop with wireguard-go, key rotation
//! by deleting the key file, the PSK, and the restart gap of the userspace
//! implementation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bulk::bulk_tcp_is_intact;
use common::{
    TestLab, icmp_echos_received, lab_exec, lab_exec_ok, output_ok, require_root, wait_for_pings,
    wait_until,
};
use weft_lab::{Backend, Signal};

/// ICMP payload of the ping that closes a capture: its encrypted packets are
/// the only ones this large.
const MARKER_SIZE: usize = 1200;

/// The UDP payload length of a `tcpdump -n` line ("... UDP, length 148").
fn udp_length(line: &str) -> Option<usize> {
    line.split_once("UDP, length ")?.1.trim().parse().ok()
}

/// `wg show` inside a node (which sees the node's own /run, as its agent).
fn wg_show(lab: &TestLab, node: &str, what: &[&str]) -> String {
    let mut argv = vec!["wg", "show"];
    argv.extend_from_slice(what);
    lab_exec_ok(lab, node, &argv)
}

#[test]
fn matrix_and_wg_show_list_every_peer_with_a_handshake() {
    require_root();
    let lab = TestLab::up("w-mx", Backend::Wireguard, &[]);
    lab.assert_matrix();
    for node in ["node1", "node2", "node3"] {
        let dump = wg_show(&lab, node, &["flannel-wg", "dump"]);
        let peers: Vec<&str> = dump.lines().skip(1).collect();
        assert_eq!(peers.len(), 2, "{node}: {dump}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for p in peers {
            let handshake: u64 = p.split('\t').nth(4).unwrap().parse().unwrap();
            assert!(
                handshake > 0 && now - handshake < 180,
                "{node}: stale or no handshake: {p}"
            );
        }
    }
    // weft status shows each peer's tunnel: held, a fresh handshake and
    // traffic both ways (the matrix just crossed it), and never a key. The
    // agent reads its WireGuard peers every 2 s, so the matrix's handshakes
    // show within that.
    let status_json = || {
        let out = lab_exec(
            &lab,
            "node1",
            &[env!("CARGO_BIN_EXE_weft"), "status", "--json"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let s: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (s, text)
    };
    wait_until(
        Duration::from_secs(10),
        "weft status to show both handshakes",
        || {
            let s = status_json().0;
            s["ok"] == true
                && s["peers"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["state"] == "programmed"))
        },
    );
    let (s, text) = status_json();
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{s:#}");
    for p in peers {
        assert_eq!(p["state"], "programmed", "{p}");
        // One device route covers every peer: no per-peer route to hold.
        assert_eq!(p["wireguard"], true, "{p}");
        assert!(p["handshake_age_secs"].as_u64().unwrap() < 180, "{p}");
        assert!(p["rx_bytes"].as_u64().unwrap() > 0, "{p}");
        assert!(p["tx_bytes"].as_u64().unwrap() > 0, "{p}");
    }
    let private = lab_exec(&lab, "node1", &["cat", "/run/flannel/wgkey"]);
    let private = String::from_utf8_lossy(&private.stdout).trim().to_owned();
    assert!(!private.is_empty());
    assert!(
        !text.contains(&private),
        "weft status printed the private key"
    );
    let human = lab_exec(&lab, "node1", &[env!("CARGO_BIN_EXE_weft"), "status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("wg=ok handshake="), "{human}");
    assert!(
        !human.contains(&private),
        "weft status printed the private key"
    );

    // The key file is flannel's: /run/flannel/wgkey, mode 0400.
    let out = lab_exec(&lab, "node1", &["stat", "-c", "%a", "/run/flannel/wgkey"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "400");
    bulk_tcp_is_intact(&lab, "node1-pod1", "node2-pod1");
}

#[test]
fn no_plaintext_on_the_wire() {
    require_root();
    let lab = TestLab::up("w-wire", Backend::Wireguard, &[]);
    let pcap = lab.lab().name().state_dir().join("wire.pcap");
    let pcap_arg = pcap.to_string_lossy().into_owned();
    let mut dump = lab
        .lab()
        .in_netns("underlay", || {
            Command::new("tcpdump")
                .args([
                    "-i",
                    "br0",
                    "-U",
                    "-n",
                    "-w",
                    &pcap_arg,
                    "ip and not igmp and not host 192.0.2.254",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| weft_lab::LabError::io("tcpdump", e))
        })
        .unwrap();
    // tcpdump says "listening on" once its filter is in place and the file
    // open; its stderr is drained until it exits.
    let stderr = BufReader::new(dump.stderr.take().unwrap());
    let (listening_tx, listening) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = listening_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    if listening.recv_timeout(Duration::from_secs(10)).is_err() {
        let _ = dump.kill();
        let _ = dump.wait();
        panic!("tcpdump did not start: {:?}", drain.join().unwrap());
    }
    let target = lab.pod_ip("node2-pod1");
    let secret = "WEFT-SECRET-PAYLOAD-4c6f6f6b";
    // A known payload, by ICMP (-p pattern) and by TCP.
    let hex: String = secret
        .bytes()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    lab.ok("node1-pod1", &["ping", "-c", "3", "-p", &hex, &target]);
    let script = format!(
        "exec 3<>/dev/tcp/{target}/9 2>/dev/null || true; printf '{secret}' | timeout 2 bash -c 'cat > /dev/udp/{target}/9999' || true"
    );
    let _ = lab.run("node1-pod1", &["bash", "-c", &script]);
    // A last, larger ping marks the end: once its reply is in the file
    // (packets are written in the order they crossed br0), so is everything
    // sent before it.
    lab.ok(
        "node1-pod1",
        &["ping", "-c", "1", "-s", &MARKER_SIZE.to_string(), &target],
    );
    wait_until(
        Duration::from_secs(10),
        "the capture to hold the marker ping and its reply",
        || {
            let read = Command::new("tcpdump")
                .args(["-n", "-r", &pcap.to_string_lossy()])
                .output()
                .unwrap();
            String::from_utf8_lossy(&read.stdout)
                .lines()
                .filter(|l| udp_length(l).is_some_and(|n| n >= MARKER_SIZE))
                .count()
                >= 2
        },
    );
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(dump.id() as i32), Signal::SIGINT);
    let _ = dump.wait();
    let _ = drain.join();

    let raw = std::fs::read(&pcap).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains(secret),
        "the payload crossed the underlay in clear"
    );
    assert!(
        !raw.windows(16).any(|w| w == &secret.as_bytes()[..16]),
        "the ping pattern crossed in clear"
    );
    // Every packet between nodes is UDP to a WireGuard port; no pod address
    // appears in any header.
    let read = Command::new("tcpdump")
        .args(["-n", "-r", &pcap.to_string_lossy()])
        .output()
        .unwrap();
    let decoded = String::from_utf8_lossy(&read.stdout);
    assert!(
        decoded.lines().count() > 3,
        "nothing was captured: {decoded}"
    );
    for line in decoded.lines() {
        assert!(
            !line.contains("10.244."),
            "a pod address on the wire: {line}"
        );
        assert!(
            line.contains(".51820") && line.contains("UDP"),
            "not WireGuard traffic: {line}"
        );
    }
}

#[test]
fn interop_with_wireguard_go() {
    require_root();
    let mut lab = TestLab::up("w-go", Backend::Wireguard, &[]);
    // node3's tunnel moves from weft's in-process implementation to
    // Debian's wireguard-go, set up from node3's key and its peers' leases.
    let peers: Vec<(String, String)> = ["node1", "node2"]
        .iter()
        .map(|n| {
            let public = wg_show(&lab, n, &["flannel-wg", "public-key"])
                .trim()
                .to_owned();
            (public, lab.subnet(n))
        })
        .collect();
    lab.lab_mut().kill_agent("node3", Signal::SIGKILL).unwrap();
    wait_until(
        Duration::from_secs(5),
        "node3's in-process device to go",
        || !lab.ok("node3", &["ip", "link"]).contains("flannel-wg"),
    );
    let own = lab.subnet("node3").replace("/24", "/32");
    let mut set = vec![
        "wg".to_owned(),
        "set".into(),
        "flannel-wg".into(),
        "private-key".into(),
        "/run/flannel/wgkey".into(),
        "listen-port".into(),
        "51820".into(),
    ];
    for (i, (public, subnet)) in peers.iter().enumerate() {
        set.extend([
            "peer".into(),
            public.clone(),
            "endpoint".into(),
            format!("192.0.2.{}:51820", i + 1),
            "allowed-ips".into(),
            subnet.clone(),
        ]);
    }
    // The `sleep 0.1` is the poll interval of a wait (5 s at most) for
    // wireguard-go's control socket.
    let script = format!(
        "rm -f /run/wireguard/flannel-wg.sock; \
         WG_PROCESS_FOREGROUND=1 wireguard-go flannel-wg >/dev/null 2>&1 & \
         for i in $(seq 50); do [ -S /run/wireguard/flannel-wg.sock ] && break; sleep 0.1; done; \
         [ -S /run/wireguard/flannel-wg.sock ] || {{ echo 'wireguard-go did not start' >&2; exit 1; }}; \
         {} && ip addr add {own} dev flannel-wg && ip link set flannel-wg up mtu 1420 && \
         ip route add 10.244.0.0/16 dev flannel-wg scope link",
        set.join(" ")
    );
    lab_exec_ok(&lab, "node3", &["bash", "-c", &script]);
    // The weft nodes still hold a session with node3's old device: traffic
    // from node3 makes wireguard-go handshake with them (a new device has
    // no session to send on), then both directions work.
    let target = lab.pod_ip("node3-pod1");
    let (to1, to2) = (lab.pod_ip("node1-pod1"), lab.pod_ip("node2-pod1"));
    let ping = |from: &str, to: &str| {
        lab.run(from, &["ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    };
    wait_until(
        Duration::from_secs(45),
        "traffic between weft and wireguard-go",
        || ping("node3-pod1", &to1) && ping("node3-pod1", &to2) && ping("node1-pod1", &target),
    );
    // Bulk TCP between weft (offloads) and wireguard-go, both ways.
    bulk_tcp_is_intact(&lab, "node1-pod1", "node3-pod1");
    let _ = lab_exec(&lab, "node3", &["pkill", "-f", "wireguard-go flannel-wg"]);
}

#[test]
fn a_new_key_is_published_and_picked_up() {
    require_root();
    let mut lab = TestLab::up("w-key", Backend::Wireguard, &[]);
    let before = wg_show(&lab, "node2", &["flannel-wg", "public-key"]);
    lab.lab_mut().kill_agent("node2", Signal::SIGTERM).unwrap();
    let out = lab_exec(&lab, "node2", &["rm", "/run/flannel/wgkey"]);
    assert!(out.status.success());
    lab.lab_mut().start_agent("node2").unwrap();
    let after = wg_show(&lab, "node2", &["flannel-wg", "public-key"]);
    assert_ne!(before, after, "a removed key file must give a new key");
    let target = lab.pod_ip("node2-pod1");
    wait_until(
        Duration::from_secs(20),
        "peers to use node2's new key",
        || {
            wg_show(&lab, "node1", &["flannel-wg", "peers"]).contains(after.trim())
                && lab
                    .run("node1-pod1", &["ping", "-c", "1", "-W", "1", &target])
                    .status
                    .success()
        },
    );
}

#[test]
fn psk_must_match() {
    require_root();
    let psk_a = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=";
    let psk_b = "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";
    let mut lab = TestLab::up_with("w-psk", Backend::Wireguard, |spec| {
        spec.backend_options
            .insert("PSK".into(), serde_json::Value::String(psk_a.into()));
    });
    lab.assert_matrix();
    // node3 restarts with another PSK: it can reach nobody.
    let conf = lab.lab().name().state_dir().join("net-conf-other-psk.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"wireguard","PSK":"{psk_b}"}}}}"#
        ),
    )
    .unwrap();
    lab.lab_mut().kill_agent("node3", Signal::SIGTERM).unwrap();
    let flag = format!("--net-config-path={}", conf.display());
    lab.lab_mut().set_agent_args("node3", &[&flag]).unwrap();
    lab.lab_mut().start_agent("node3").unwrap();
    let to3 = lab.pod_ip("node3-pod1");
    let to2 = lab.pod_ip("node2-pod1");
    for _ in 0..3 {
        assert!(
            !lab.run("node1-pod1", &["ping", "-c", "1", "-W", "1", &to3])
                .status
                .success(),
            "a mismatched PSK let traffic through"
        );
    }
    assert!(
        lab.run("node1-pod1", &["ping", "-c", "2", "-W", "1", &to2])
            .status
            .success()
    );
}

#[test]
fn userspace_restart_gap_is_under_a_second() {
    require_root();
    let lab = TestLab::up("w-gap", Backend::Wireguard, &[]);
    let target = lab.pod_ip("node2-pod1");
    lab.ok("node1-pod1", &["ping", "-c", "2", &target]);
    let echos = icmp_echos_received(&lab, "node2-pod1");
    let server = common::iperf3_server(&lab, "node2-pod1");
    let (out, stream, restarted_in) = std::thread::scope(|s| {
        let ping = s.spawn(|| {
            lab.run(
                "node1-pod1",
                &["ping", "-q", "-i", "0.01", "-W", "1", "-c", "600", &target],
            )
        });
        // A long TCP stream through the tunnel as well: the connection must
        // outlive the restart (TCP retransmits across the gap).
        let stream = s.spawn(|| {
            lab.run(
                "node1-pod1",
                &["iperf3", "-c", &target, "-t", "12", "-b", "20M"],
            )
        });
        wait_for_pings(&lab, "node2-pod1", echos);
        let pid = lab.lab().node("node2").unwrap().pid.unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        let start = Instant::now();
        // What a supervisor (kubelet, systemd) does: start it again at once.
        let weft = env!("CARGO_BIN_EXE_weft");
        output_ok(Command::new(weft).args([
            "lab",
            "restart",
            "--name",
            lab.lab().name().as_str(),
            "node2",
        ]));
        let took = start.elapsed();
        (ping.join().unwrap(), stream.join().unwrap(), took)
    });
    drop(server);
    assert!(
        stream.status.success(),
        "the TCP stream broke across the restart: {}{}",
        String::from_utf8_lossy(&stream.stdout),
        String::from_utf8_lossy(&stream.stderr)
    );
    let summary = common::ping::ping_summary(&out);
    // The real spacing of the probes (asked for 10 ms, often ~17 ms).
    let total_ms = summary
        .total_ms
        .unwrap_or_else(|| panic!("no duration in ping's summary"));
    let spacing_ms = total_ms / summary.sent.max(1);
    let lost = summary.lost();
    let gap_ms = (lost + 1) * spacing_ms;
    println!(
        "userspace WireGuard: agent back in {restarted_in:?}; {lost} pings lost, {spacing_ms} ms apart: a gap of at most {gap_ms} ms"
    );
    assert!(gap_ms < 1000, "the restart gap was {gap_ms} ms");
}
