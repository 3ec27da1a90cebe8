#![allow(clippy::unwrap_used, clippy::expect_used)]
//! weft's VICI client against a real charon (Debian's strongswan-charon),
//! on the host: charon runs in a network and mount namespace of its own
//! (its `/run` a fresh tmpfs, so its socket and pid file touch nothing of
//! the host), reached through `/proc/<pid>/root`. IKE needs no ESP, so the
//! host (no esp4) can run this; the SAs themselves are the VM's business.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_dataplane::ipsec::IpsecSettings;
use weft_dataplane::ipsec::charon::find_charon;
use weft_dataplane::ipsec::config::{connection, shared_key};
use weft_dataplane::ipsec::vici::{Message, Vici, ViciError};

#[path = "../src/ipsec/fixtures.rs"]
mod fixtures;

use fixtures::tunnel;

struct Charon(Child);

impl Drop for Charon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// charon in fresh namespaces; its socket path as seen from here.
fn start() -> (Charon, PathBuf) {
    assert!(nix::unistd::geteuid().is_root(), "needs root (namespaces)");
    let binary = find_charon().expect("strongswan-charon (scripts/install-deps.sh)");
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs tmpfs /run && ip link set lo up && exec {}",
        binary.display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--net", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = PathBuf::from(format!("/proc/{}/root/run/charon.vici", child.id()));
    let charon = Charon(child);
    let started = Instant::now();
    while Vici::connect(&socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "charon did not open {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (charon, socket)
}

/// The unit tests' settings, but flannel's default: no UDP encapsulation.
fn settings() -> IpsecSettings {
    IpsecSettings {
        udp_encap: false,
        ..fixtures::settings()
    }
}

#[test]
fn every_command_weft_sends_is_understood_by_charon() {
    let (_charon, socket) = start();
    let mut vici = Vici::connect(&socket).unwrap();
    let version = vici.call("version", Message::new()).unwrap();
    assert_eq!(
        version.str("daemon").as_deref(),
        Some("charon"),
        "{version:?}"
    );
    eprintln!("charon {}", version.str("version").unwrap_or_default());

    // Keys: loaded under weft's id, listed, removed.
    let id = "weft-psk-192.0.2.2";
    vici.call_ok(
        "load-shared",
        shared_key(id, "192.0.2.2".parse().unwrap(), &settings()),
    )
    .unwrap();
    let keys = vici
        .call("get-shared", Message::new())
        .unwrap()
        .strs("keys");
    assert!(keys.contains(&id.to_owned()), "{keys:?}");
    vici.call_ok("unload-shared", Message::new().kv("id", id))
        .unwrap();
    let keys = vici
        .call("get-shared", Message::new())
        .unwrap()
        .strs("keys");
    assert!(!keys.contains(&id.to_owned()), "{keys:?}");

    // flannel's connection: accepted as weft builds it, listed, unloaded.
    let t = tunnel();
    vici.call_ok("load-conn", connection(&t, &settings()))
        .unwrap();
    let conns = vici
        .call("get-conns", Message::new())
        .unwrap()
        .strs("conns");
    assert_eq!(conns, vec![t.conn_name()]);
    // start_action=start: charon is already trying the peer (unreachable
    // here); list-sas streams it.
    let (events, _) = vici
        .call_streamed("list-sas", "list-sa", Message::new())
        .unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.sections().all(|(name, _)| name == t.conn_name())),
        "{events:?}"
    );
    // The rekey weft asks for when SAs vanish: refused here (no child SA
    // yet), and said so, not hung.
    let rekey = vici.call_ok(
        "rekey",
        Message::new()
            .kv("child", t.child_name())
            .kv("ike", t.conn_name()),
    );
    assert!(
        matches!(rekey, Ok(_) | Err(ViciError::Refused { .. })),
        "{rekey:?}"
    );
    // The initiate weft sends for a tunnel without any IKE SA: returns at
    // once (timeout -1: do not wait for the peer), charon keeps trying.
    let asked = Instant::now();
    let initiated = vici.call_ok(
        "initiate",
        Message::new()
            .kv("child", t.child_name())
            .kv("ike", t.conn_name())
            .kv("timeout", "-1"),
    );
    eprintln!("initiate answered in {:?}: {initiated:?}", asked.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(3), "{initiated:?}");
    vici.call_ok("unload-conn", Message::new().kv("name", t.conn_name()))
        .unwrap();
    let conns = vici
        .call("get-conns", Message::new())
        .unwrap()
        .strs("conns");
    assert!(conns.is_empty(), "{conns:?}");

    // A bad proposal is refused with charon's reason, not accepted blindly.
    let mut bad = settings();
    bad.esp_proposal = "rot13-md4".into();
    let refused = vici.call_ok("load-conn", connection(&t, &bad)).unwrap_err();
    assert!(matches!(refused, ViciError::Refused { .. }), "{refused}");
    eprintln!("a bad proposal: {refused}");

    // The check weftd runs before leasing: the good proposal passes and
    // leaves nothing, the bad one is refused.
    use weft_dataplane::ipsec::config::{PROPOSAL_CHECK, proposal_check};
    vici.call_ok("load-conn", proposal_check(&settings()))
        .unwrap();
    vici.call_ok("unload-conn", Message::new().kv("name", PROPOSAL_CHECK))
        .unwrap();
    assert!(matches!(
        vici.call_ok("load-conn", proposal_check(&bad)),
        Err(ViciError::Refused { .. })
    ));
    let conns = vici
        .call("get-conns", Message::new())
        .unwrap()
        .strs("conns");
    assert!(conns.is_empty(), "{conns:?}");

    // An unknown command is named as such.
    let unknown = vici.call("no-such-command", Message::new()).unwrap_err();
    assert!(matches!(unknown, ViciError::Unknown { .. }), "{unknown}");
}
