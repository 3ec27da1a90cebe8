//! WireGuard key rotation under traffic (issue 21), shared by the userspace
//! test (`e2e_wg_rotation.rs`, on the host) and the kernel one
//! (`vm_kernel.rs`, in the Debian-kernel VM): one scenario, so that the two
//! paths are measured the same way and only their loss bounds differ.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::bulk::pattern;
use super::ping::Pinger;
use super::{TestLab, icmp_echos_received, lab_exec, wait_for_pings, wait_until};

/// `wg show flannel-wg WHAT` in a node, or what it said on failure.
pub fn wg_try(lab: &TestLab, node: &str, what: &[&str]) -> Result<String, String> {
    let mut argv = vec!["wg", "show", "flannel-wg"];
    argv.extend_from_slice(what);
    let out = lab_exec(lab, node, &argv);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn wg_show(lab: &TestLab, node: &str, what: &[&str]) -> String {
    wg_try(lab, node, what).unwrap_or_else(|e| panic!("wg show {what:?} on {node}: {e}"))
}

/// `weft wireguard rotate-key` on `node`; what it printed.
pub fn rotate(lab: &TestLab, node: &str) -> String {
    let out = lab_exec(
        lab,
        node,
        &[env!("CARGO_BIN_EXE_weft"), "wireguard", "rotate-key"],
    );
    assert!(
        out.status.success(),
        "rotate-key on {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Peers `peers` all list `key` with a handshake (they moved to it).
pub fn peers_handshook_with(lab: &TestLab, peers: &[&str], key: &str) -> bool {
    peers.iter().all(|n| {
        wg_try(lab, n, &["latest-handshakes"]).is_ok_and(|hs| {
            hs.lines()
                .any(|l| l.starts_with(key) && !l.ends_with("\t0"))
        })
    })
}

/// What a rotation under traffic measured.
pub struct Measured {
    /// Pings each sender lost across the rotation, by sender pod.
    pub lost: Vec<(&'static str, u64)>,
    pub old_key: String,
    pub new_key: String,
}

/// Rotates node2's key under 10 ms pings from node1's and node3's pods
/// and a TCP stream from node1's pod, and checks everything but the loss
/// (the caller's bound): the stream arrives byte for byte, the pings
/// straddle the whole rotation (so a loss of 0 is not vacuous), the
/// peers list the new key and never the old one, and `weft status` says
/// when and that the rotation is over.
pub fn rotate_under_traffic(lab: &TestLab) -> Measured {
    let old = wg_show(lab, "node2", &["public-key"]);
    let target = lab.pod_ip("node2-pod1");
    lab.ok("node1-pod1", &["ping", "-c", "2", &target]);
    lab.ok("node3-pod1", &["ping", "-c", "2", &target]);

    // The stream: node1-pod1 sends a known pattern until told to stop;
    // node2-pod1 checks every byte and counts them.
    const PORT: u16 = 5321;
    let listener = lab
        .lab()
        .in_netns("node2-pod1", || {
            TcpListener::bind(("0.0.0.0", PORT)).map_err(|e| weft_lab::LabError::io("bind", e))
        })
        .unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let server = {
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut at = 0u64;
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return at;
                }
                for (i, b) in buf[..n].iter().enumerate() {
                    let i = at + i as u64;
                    assert_eq!(*b, pattern(7, i), "byte {i} differs");
                }
                at += n as u64;
                received.store(at, Ordering::Relaxed);
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let addr = format!("{target}:{PORT}");
    let mut stream = lab
        .lab()
        .in_netns("node1-pod1", move || {
            TcpStream::connect(&addr).map_err(|e| weft_lab::LabError::io("connect", e))
        })
        .unwrap();
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut at = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = pattern(7, at + i as u64);
                }
                stream.write_all(&buf).unwrap();
                at += buf.len() as u64;
            }
            stream.shutdown(Shutdown::Write).unwrap();
            at
        })
    };

    let echos = icmp_echos_received(lab, "node2-pod1");
    let pingers = [
        ("node1-pod1", Pinger::start(lab, "node1-pod1", &target)),
        ("node3-pod1", Pinger::start(lab, "node3-pod1", &target)),
    ];
    wait_for_pings(lab, "node2-pod1", echos);
    wait_until(Duration::from_secs(10), "the stream to flow", || {
        received.load(Ordering::Relaxed) > 1 << 20
    });
    let rotated_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let said = rotate(lab, "node2");
    let new = wg_show(lab, "node2", &["public-key"]);
    assert!(
        said.contains(&new),
        "rotate-key printed {said:?}, wg shows {new}"
    );
    assert_ne!(new, old);
    // Both peers on the new key, with a handshake, and traffic on it.
    wait_until(
        Duration::from_secs(20),
        "peers to hold node2's new key",
        || peers_handshook_with(lab, &["node1", "node3"], &new),
    );
    let at_switch = received.load(Ordering::Relaxed);
    let answered: Vec<u64> = pingers.iter().map(|(_, p)| p.answered()).collect();
    wait_until(
        Duration::from_secs(20),
        "the stream and the pings to go on after the switch",
        || {
            received.load(Ordering::Relaxed) > at_switch + (4 << 20)
                && pingers
                    .iter()
                    .zip(&answered)
                    .all(|((_, p), &a)| p.answered() > a + 100)
        },
    );
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let got = server.join().unwrap();
    assert_eq!(got, sent, "the stream lost or added bytes");

    let mut lost = Vec::new();
    for (from, pinger) in pingers {
        let (tx, missing) = pinger.stop();
        println!("{from} -> node2-pod1 across the rotation: {tx} sent, {missing} lost");
        lost.push((from, missing));
    }
    for n in ["node1", "node3"] {
        let peers = wg_show(lab, n, &["peers"]);
        assert!(peers.contains(&new), "{n}: {peers}");
        assert!(
            !peers.contains(&old),
            "{n} still lists the old key: {peers}"
        );
    }
    // The agent says when, and that the rotation is over once every peer
    // handshook with the new key (the time from the JSON view: the human
    // line has minutes, and a rotation under emulation can be minutes
    // old by now).
    wait_until(
        Duration::from_secs(10),
        "the rotation to be complete",
        || {
            let view = lab.lab().agent_status("node2").unwrap().view;
            let out = lab_exec(lab, "node2", &[env!("CARGO_BIN_EXE_weft"), "status"]);
            let text = String::from_utf8_lossy(&out.stdout);
            view.wireguard_key_made_unix
                .is_some_and(|t| t + 1 >= rotated_at)
                && !view.wireguard_key_rotation_in_progress
                && text.contains("wg key:  made or last rotated ")
                && !text.contains("rotation in progress")
        },
    );
    Measured {
        lost,
        old_key: old,
        new_key: new,
    }
}

/// The PublicKey in `node`'s backend-data annotation, from a Kubernetes
/// lab's API server: what flannel peers read.
pub fn annotated_key(lab: &TestLab, node: &str) -> String {
    annotated_data(lab, node).0
}

/// The PublicKey and Port of `node`'s backend-data annotation.
fn annotated_data(lab: &TestLab, node: &str) -> (String, u64) {
    const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
    let obj = super::node_from_api(lab, node);
    let data = obj["metadata"]["annotations"][BACKEND_DATA]
        .as_str()
        .unwrap_or_else(|| panic!("no {BACKEND_DATA} on {node}: {obj}"));
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    let key = data["PublicKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no PublicKey in {data}"));
    (key.to_owned(), data["Port"].as_u64().unwrap_or(51820))
}

/// What a flannel peer loses when node2 rotates, on a Kubernetes lab:
/// node3's agent is SIGKILLed (its kernel device stays, as flanneld's
/// would), and the test then does exactly what flanneld's wireguard
/// backend does on the node informer's update event (pkg/subnet/kube
/// handleUpdateLeaseEvent, then pkg/backend/wireguard's EventAdded):
/// `addPeer` with the lease's PublicKey, endpoint and subnet, allowed IPs
/// replaced (`wg set ... allowed-ips`), and no removal of the old key's
/// peer. The emulated watch polls the annotation every 50 ms, no faster
/// than flannel's informer. Returns (pings sent, lost) from node3's
/// pod to node2's across the rotation; asserts that the old key's peer
/// is left on node3 without networks, as flannel leaves it.
pub fn flannel_peer_across_a_rotation(lab: &mut TestLab) -> (u64, u64) {
    lab.lab_mut().kill_agent("node3", Signal::SIGKILL).unwrap();
    let lab = &*lab;
    let (old, port) = annotated_data(lab, "node2");
    let endpoint = format!("{}:{port}", lab.lab().node("node2").unwrap().underlay_ip);
    let subnet = lab.subnet("node2");
    let target = lab.pod_ip("node2-pod1");
    lab.ok("node3-pod1", &["ping", "-c", "2", &target]);
    let echos = icmp_echos_received(lab, "node2-pod1");
    let pinger = Pinger::start(lab, "node3-pod1", &target);
    wait_for_pings(lab, "node2-pod1", echos);
    let new = std::thread::scope(|s| {
        // The annotation is watched while rotate-key runs, as flanneld's
        // informer would be.
        let start = Instant::now();
        let rotating = s.spawn(|| rotate(lab, "node2"));
        let mut new = old.clone();
        wait_until(
            Duration::from_secs(20),
            "node2's annotation to change",
            || {
                new = annotated_key(lab, "node2");
                new != old
            },
        );
        let seen = start.elapsed();
        let set = lab.run(
            "node3",
            &[
                "wg",
                "set",
                "flannel-wg",
                "peer",
                &new,
                "endpoint",
                &endpoint,
                "allowed-ips",
                &subnet,
            ],
        );
        assert!(set.status.success(), "wg set: {set:?}");
        println!(
            "emulated flanneld: node2's new key seen {seen:?} after rotate-key started, its peer set {:?} after",
            start.elapsed()
        );
        rotating.join().unwrap();
        new
    });
    wait_until(
        Duration::from_secs(20),
        "the flannel peer to handshake with node2's new key",
        || peers_handshook_with(lab, &["node3"], &new),
    );
    pinger.wait_for_more(
        100,
        Duration::from_secs(20),
        "the flannel peer's pings to go on after the switch",
    );
    let allowed = wg_show(lab, "node3", &["allowed-ips"]);
    assert!(
        allowed
            .lines()
            .any(|l| l.starts_with(&old) && l.ends_with("(none)")),
        "flannel leaves the old key's peer without networks: {allowed}"
    );
    let (sent, lost) = pinger.stop();
    println!(
        "node3-pod1 (flannel peer) -> node2-pod1 across the rotation: {sent} sent, {lost} lost"
    );
    (sent, lost)
}

/// The public key of the private key in `node`'s key file
/// (`/run/flannel/wgkey` in its private /run), and the names of every
/// other file beside it.
pub fn key_file(lab: &TestLab, node: &str) -> (String, Vec<String>) {
    let key = super::lab_exec_ok(lab, node, &["sh", "-c", "wg pubkey < /run/flannel/wgkey"]);
    let others = super::lab_exec_ok(lab, node, &["ls", "-A", "/run/flannel"])
        .lines()
        .filter(|f| *f != "wgkey")
        .map(str::to_owned)
        .collect();
    (key.trim().to_owned(), others)
}

/// How often `node2`'s agent log says it stalled a rotation.
fn stalls(lab: &TestLab) -> usize {
    let log = lab.lab().node("node2").unwrap().dir.join("weftd.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("stalling the key rotation")
        .count()
}

/// Rotates node2's key with the agent stalled at `step`, SIGKILLs it
/// there, restarts it, and checks that everything agrees on one key:
/// the old one if the kill came before the commit point, a new one after.
pub fn kill_at(lab: &mut TestLab, step: &str, committed: bool) {
    let old = wg_show(lab, "node2", &["public-key"]);
    lab.lab_mut()
        .set_agent_env("node2", &[("WEFTD_TEST_ROTATION_STALL", step)])
        .unwrap();
    lab.lab_mut().restart("node2").unwrap();
    let before = stalls(lab);
    let mut rotate = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "lab",
            "exec",
            "--name",
            lab.lab().name().as_str(),
            "node2",
            "--",
        ])
        .args([env!("CARGO_BIN_EXE_weft"), "wireguard", "rotate-key"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        &format!("the rotation to stall {step}"),
        || stalls(lab) > before,
    );
    if !committed {
        // The kill really comes with the new key staged beside the old.
        let (_, staged) = key_file(lab, "node2");
        assert!(
            staged.iter().any(|f| f.starts_with(".wgkey.rotate-")),
            "nothing staged {step}: {staged:?}"
        );
    }
    lab.lab_mut().kill_agent("node2", Signal::SIGKILL).unwrap();
    assert!(
        !rotate.wait().unwrap().success(),
        "rotate-key said it rotated though the agent was killed {step}"
    );
    lab.lab_mut().set_agent_env("node2", &[]).unwrap();
    lab.lab_mut().start_agent("node2").unwrap();

    let (file, others) = key_file(lab, "node2");
    println!(
        "killed {step}: old key {old}, key after the restart {file} ({})",
        if file == old { "kept" } else { "new" }
    );
    assert!(
        others.iter().all(|f| !f.contains("rotate")),
        "killed {step}: a temporary key file is left: {others:?}"
    );
    if committed {
        assert_ne!(file, old, "killed {step}: the new key was lost");
    } else {
        assert_eq!(file, old, "killed {step}: the old key was not kept");
    }
    assert_eq!(
        wg_show(lab, "node2", &["public-key"]),
        file,
        "killed {step}: the device's key is not the file's"
    );
    wait_until(
        Duration::from_secs(20),
        &format!("node2's annotation to publish its key after a kill {step}"),
        || annotated_key(lab, "node2") == file,
    );
    // The peers hold the key, and only it, and reach node2's pod with it.
    let target = lab.pod_ip("node2-pod1");
    for (node, pod) in [("node1", "node1-pod1"), ("node3", "node3-pod1")] {
        wait_until(
            Duration::from_secs(30),
            &format!("{pod} to reach node2-pod1 after a kill {step}"),
            || {
                lab.run(pod, &["ping", "-c", "1", "-W", "1", &target])
                    .status
                    .success()
            },
        );
        assert!(peers_handshook_with(lab, &[node], &file), "{node}");
        let peers = wg_show(lab, node, &["peers"]);
        if committed {
            assert!(
                !peers.contains(&old),
                "{node} still lists the old key: {peers}"
            );
        }
    }
}
