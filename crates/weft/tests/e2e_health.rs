//! What systemd and Kubernetes probes see of a running agent (issue 20):
//! `READY=1` on `$NOTIFY_SOCKET` only once the node is ready and
//! `STOPPING=1` on SIGTERM, as flanneld sends them to a `Type=notify`
//! unit; `/readyz` turning 503 while the lease has expired unrenewed and
//! 200 again once it is renewed, with `/healthz` staying 200 throughout
//! (the agent is alive; the store is not).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{TestLab, health_get, require_root, wait_until};
use weft_lab::{Backend, Signal, StoreKind};

/// What the test's "systemd" saw when a message arrived.
#[derive(Debug)]
struct Seen {
    message: String,
    subnet_env_existed: bool,
    readyz: (u16, String),
}

#[test]
fn systemd_hears_ready_once_ready_and_stopping_on_sigterm() {
    require_root();
    let mut lab = TestLab::up_with("hnfy", Backend::HostGw, |spec| {
        spec.nodes = 2;
        spec.agent_args = vec!["--healthz-port=8081".into()];
    });
    let node = lab.lab().node("node1").unwrap().clone();
    // Restart node1's agent as systemd would start it: NOTIFY_SOCKET names
    // a datagram socket we hold. It lives under the lab's state directory,
    // which the agent's private mount namespace sees at the same path.
    lab.lab_mut().kill_agent("node1", Signal::SIGTERM).unwrap();
    let subnet_env = node.dir.join("subnet.env");
    std::fs::remove_file(&subnet_env).unwrap();
    let path = node.dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    lab.lab_mut()
        .set_agent_env("node1", &[("NOTIFY_SOCKET", path.to_str().unwrap())])
        .unwrap();

    // The listener looks at the node the moment each message arrives.
    let netns = node.netns.clone();
    let listener = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let stop = message == "STOPPING=1";
            seen.push(Seen {
                subnet_env_existed: subnet_env.exists(),
                readyz: if stop {
                    (0, String::new())
                } else {
                    health_get(&netns, "/readyz")
                },
                message,
            });
            if stop {
                break;
            }
        }
        seen
    });
    lab.lab_mut().start_agent("node1").unwrap();
    assert_eq!(health_get(&node.netns, "/readyz").0, 200);
    lab.lab_mut().kill_agent("node1", Signal::SIGTERM).unwrap();
    let seen = listener.join().unwrap();

    let messages: Vec<&str> = seen.iter().map(|s| s.message.as_str()).collect();
    assert_eq!(messages, ["READY=1", "STOPPING=1"], "{seen:#?}");
    let ready = &seen[0];
    assert!(
        ready.subnet_env_existed,
        "READY=1 came before subnet.env was written: {seen:#?}"
    );
    assert_eq!(
        ready.readyz,
        (200, "flanneld is ready".to_owned()),
        "READY=1 came before /readyz turned 200"
    );
}

#[test]
fn readyz_fails_while_the_lease_is_expired_and_recovers_when_renewed() {
    require_root();
    // A 6 s lease: renewed every 3 s while etcd answers, expired 6 s at
    // most after etcd goes away.
    let mut lab = TestLab::up_with("hexp", Backend::Vxlan, |spec| {
        spec.nodes = 2;
        spec.store = StoreKind::Etcd;
        spec.agent_args = vec!["--healthz-port=8081".into(), "--subnet-lease-ttl=6".into()];
    });
    let netns = lab.lab().node("node1").unwrap().netns.clone();
    assert_eq!(health_get(&netns, "/readyz").0, 200);

    lab.lab_mut().stop_store().unwrap();
    wait_until(
        Duration::from_secs(30),
        "/readyz to fail once the lease expires unrenewed",
        || health_get(&netns, "/readyz").0 == 503,
    );
    let (_, why) = health_get(&netns, "/readyz");
    assert!(
        why.contains("expired") && why.contains("without being renewed") && !why.contains('\n'),
        "one line saying why: {why:?}"
    );
    // The agent itself is fine: its loop turns, only the store is gone.
    assert_eq!(
        health_get(&netns, "/healthz"),
        (200, "flanneld is running".to_owned())
    );

    lab.lab_mut().start_store().unwrap();
    wait_until(
        Duration::from_secs(30),
        "/readyz to answer 200 again once the lease is renewed",
        || health_get(&netns, "/readyz") == (200, "flanneld is ready".to_owned()),
    );
    assert_eq!(health_get(&netns, "/healthz").0, 200);
}
