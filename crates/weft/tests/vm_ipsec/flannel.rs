//! A flannel-shaped ipsec peer next to a weft node.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use weft_dataplane::ipsec::vici::{Message, Vici};
use weft_lab::Backend;

use super::common::{TestLab, wait_until};
use super::helpers::*;

/// A flannel-shaped peer: node2 is turned into a flannel ipsec node (no
/// flanneld binary exists here, so it is emulated exactly as flannel's
/// `pkg/backend/ipsec` configures a node: its own charon, one connection
/// and two PSKs loaded over VICI with flannel's fields (swanctl.conf
/// cannot name a connection flannel's way: dots in a section name nest
/// it), and the three XFRM policies `ip xfrm policy add` makes as
/// flannel's netlink calls do).
/// node1 stays weft. Pods reach each other both ways, over ESP SAs with
/// reqid 11 that weft's charon and the "flannel" charon negotiated.
#[test]
#[ignore = "needs the Debian-kernel VM: scripts/vm-test.sh runs it"]
fn ipsec_flannel_shaped_peer_interoperates() {
    let mut lab = TestLab::up_with("vif", Backend::Ipsec, |spec| {
        spec.ready_timeout = READY_WITHIN;
        spec.nodes = 2;
        // node2's lease must outlive its agent: flannel would renew it.
        spec.agent_args = vec!["--subnet-lease-ttl=1800".into()];
    });
    for node in nodes(&lab) {
        wait_for_tunnels(&lab, &node, 1, READY_WITHIN);
    }
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.lab().name().state_dir().join("net-conf.json")).unwrap(),
    )
    .unwrap();
    let psk = conf["Backend"]["PSK"].as_str().unwrap().to_owned();
    let (s1, s2) = (lab.subnet("node1"), lab.subnet("node2"));
    let (ip1, ip2) = ("192.0.2.1", "192.0.2.2");

    // node2 stops being weft: its agent stops its charon (the SAs go);
    // the policies weft left are replaced by flannel's own below.
    lab.lab_mut().kill_agent("node2", Signal::SIGTERM).unwrap();
    lab.ok("node2", &["ip", "xfrm", "policy", "flush"]);
    lab.ok("node2", &["ip", "xfrm", "state", "flush"]);

    let dir = tempfile::tempdir().unwrap();
    // flannel's charon: in node2's network namespace and a mount
    // namespace of its own (a fresh /run for its socket and pid file),
    // reached through /proc/<pid>/root. Line-buffered: its log is stdout.
    let netns2 = lab.lab().node("node2").unwrap().netns.clone();
    let charon_log = dir.path().join("charon.log");
    let script = "mount --make-rprivate / && mount -t tmpfs tmpfs /run && exec stdbuf -oL /usr/lib/ipsec/charon";
    let mut charon = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns2}"))
        .args(["unshare", "--mount", "sh", "-c", script])
        .stdout(std::fs::File::create(&charon_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let uri = format!("unix:///proc/{}/root/run/charon.vici", charon.id());
    let socket = format!("/proc/{}/root/run/charon.vici", charon.id());
    wait_until(
        Duration::from_secs(30),
        "flannel's charon to listen",
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
    );
    let swanctl = |args: &[&str]| {
        Command::new("swanctl")
            .args(args)
            .args(["--uri", &uri])
            .output()
            .unwrap()
    };
    // What flannel's handle_charon.go sends over VICI (goStrongswanVici),
    // written here from flannel's source, not from weft's builder: a PSK
    // per public IP (no id: flannel sets none) and one connection.
    let mut vici = Vici::connect(std::path::Path::new(&socket)).unwrap();
    for owner in [ip2, ip1] {
        vici.call_ok(
            "load-shared",
            Message::new()
                .kv("type", "IKE")
                .kv("data", &psk)
                .list("owners", [owner]),
        )
        .unwrap();
    }
    let child = Message::new()
        .list("local_ts", [s2.as_str()])
        .list("remote_ts", [s1.as_str()])
        .list("esp_proposals", ["aes128gcm16-sha256-prfsha256-ecp256"])
        .kv("start_action", "start")
        .kv("close_action", "trap")
        .kv("dpd_action", "restart")
        .kv("mode", "tunnel")
        .kv("reqid", "11")
        .kv("rekey_time", "1h")
        .kv("policies", "no");
    let conn = Message::new()
        .list("local_addrs", [ip2])
        .list("remote_addrs", [ip1])
        .list("proposals", ["aes256-sha256-modp4096"])
        .kv("version", "2")
        .kv("keyingtries", "0")
        .kv("encap", "no")
        .section("local", Message::new().kv("auth", "psk"))
        .section("remote", Message::new().kv("auth", "psk"))
        .section(
            "children",
            Message::new().section(&format!("{s2}-{s1}"), child),
        );
    vici.call_ok(
        "load-conn",
        Message::new().section(&format!("{ip2}-{s2}-{s1}-{ip1}"), conn),
    )
    .unwrap();
    for (dir, src, dst, from, to) in [
        ("out", &s2, &s1, ip2, ip1),
        ("in", &s1, &s2, ip1, ip2),
        ("fwd", &s1, &s2, ip1, ip2),
    ] {
        lab.ok(
            "node2",
            &[
                "ip", "xfrm", "policy", "add", "src", src, "dst", dst, "dir", dir, "tmpl", "src",
                from, "dst", to, "proto", "esp", "reqid", "11", "mode", "tunnel",
            ],
        );
    }

    let started = Instant::now();
    // What both sides hold, compact, for a failure's message (the VM
    // harness shows a failed test's last 60 lines).
    let diagnose = |lab: &TestLab| -> String {
        let mut d = String::new();
        let log = std::fs::read_to_string(&charon_log).unwrap_or_default();
        d += &format!("flannel's charon log:\n{}\n", tail(&log, 15));
        let sas = swanctl(&["--list-sas"]);
        d += &format!(
            "flannel's charon SAs:\n{}\n",
            tail(&String::from_utf8_lossy(&sas.stdout), 8)
        );
        for node in ["node1", "node2"] {
            let out = lab.run(node, &["ip", "xfrm", "state", "list"]);
            let states: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("src") || l.contains("proto esp"))
                .map(str::to_owned)
                .collect();
            d += &format!("{node} xfrm states: {}\n", states.join(" | "));
            d += &format!("{node} policies: {}\n", policy_count(lab, node));
        }
        d += &format!("node1 tunnels: {:?}\n", tunnels(lab, "node1"));
        d
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !tunnels(&lab, "node1")
        .iter()
        .all(|t| t.child_state == "INSTALLED" && t.kernel_sas >= 2)
        || tunnels(&lab, "node1").is_empty()
    {
        if Instant::now() > deadline {
            panic!(
                "node1 holds no tunnel with the flannel-shaped peer:\n{}",
                diagnose(&lab)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let (pod1, pod2) = (lab.pod_ip("node1-pod1"), lab.pod_ip("node2-pod1"));
    for (from, to) in [("node1-pod1", &pod2), ("node2-pod1", &pod1)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !lab
            .run(from, &["ping", "-c", "1", "-W", "1", to])
            .status
            .success()
        {
            if Instant::now() > deadline {
                panic!("{from} cannot reach {to}:\n{}", diagnose(&lab));
            }
        }
    }
    eprintln!(
        "weft and flannel-shaped peers carry pod traffic {:?} after flannel's charon loaded",
        started.elapsed()
    );
    let states = lab.ok("node2", &["ip", "xfrm", "state", "list"]);
    assert!(
        states.matches("reqid 11 mode tunnel").count() >= 2,
        "{states}"
    );
    let sas = swanctl(&["--list-sas"]);
    let sas = String::from_utf8_lossy(&sas.stdout);
    assert!(
        sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
        "{sas}"
    );

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(charon.id() as i32),
        Signal::SIGTERM,
    );
    let _ = charon.wait();
}
