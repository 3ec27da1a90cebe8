#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Interop with an implementation nobody here wrote: node a runs weft's
//! device, node b Debian's `wireguard-go`, configured with `wg set`.
//! Traffic must flow both ways, with and without a PSK. Needs root and the
//! `wireguard-go` and `wg` programs; skips otherwise.

mod common_wg;

use std::process::{Command, Stdio};
use std::time::Duration;

use common_wg::{
    ChildGuard, Node, close, now_secs, peer, ping_ok, require_root, spec, tcp_echo, underlay,
    unique_dev, weft_device, wg_dump,
};
use weft_core::wg_key::WgKey;

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn interop(psk: Option<WgKey>) {
    require_root();
    assert!(
        have("wireguard-go") && have("wg"),
        "needs wireguard-go and wg: apt-get install -y --no-install-recommends wireguard-go wireguard-tools (scripts/install-deps.sh does)"
    );
    let a = Node::new("ia", false).unwrap();
    let b = Node::new("ib", false).unwrap();
    underlay(&a, &b).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key_file, pub_b) = common_wg::wg_keypair(keys.path(), "wgo.key");
    let spec_a = spec(&unique_dev("w"), 51820);
    let pub_a = spec_a.private_key.public_key();

    // wireguard-go on b, in the foreground so that the guard's kill stops it.
    let name_b = unique_dev("g");
    let _wgo: ChildGuard = b.ns.spawn_wireguard_go(&name_b).unwrap();
    let psk_file = keys.path().join("psk");
    let mut set = vec![
        "set".to_string(),
        name_b.clone(),
        "private-key".into(),
        key_file.display().to_string(),
        "listen-port".into(),
        "51820".into(),
        "peer".into(),
        pub_a.to_base64(),
        "endpoint".into(),
        "192.0.2.1:51820".into(),
        "allowed-ips".into(),
        "10.244.1.0/24".into(),
    ];
    if let Some(psk) = psk {
        std::fs::write(&psk_file, psk.to_base64()).unwrap();
        set.extend(["preshared-key".into(), psk_file.display().to_string()]);
    }
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    b.exec("wg", &set).unwrap();
    b.exec("ip", &["addr", "add", "10.244.2.0/32", "dev", &name_b])
        .unwrap();
    b.exec("ip", &["link", "set", &name_b, "up"]).unwrap();
    b.exec("ip", &["route", "add", "10.244.0.0/16", "dev", &name_b])
        .unwrap();

    let dev_a = weft_device(&a, spec_a, 1, vec![peer(pub_b, 2, 51820, psk)]).unwrap();

    assert!(
        ping_ok(&a.ns, "10.244.2.0", Duration::from_secs(10)),
        "weft -> wireguard-go: no ping answer"
    );
    assert!(
        ping_ok(&b.ns, "10.244.1.0", Duration::from_secs(5)),
        "wireguard-go -> weft: no ping answer"
    );
    tcp_echo(&a, &b, "10.244.2.0", 7001, 256 * 1024).unwrap();
    tcp_echo(&b, &a, "10.244.1.0", 7002, 256 * 1024).unwrap();

    for (node, name) in [(&a, dev_a.name().to_string()), (&b, name_b.clone())] {
        let (_, _, peers) = wg_dump(&node.ns, &name).unwrap();
        let age = now_secs().saturating_sub(peers[0].latest_handshake);
        assert!(
            peers[0].latest_handshake > 0 && age < 60,
            "{name}: handshake {age} s ago"
        );
        assert!(peers[0].rx > 0 && peers[0].tx > 0);
    }
    close(&a, dev_a).unwrap();
}

#[test]
fn weft_and_wireguard_go_exchange_traffic_both_ways() {
    interop(None);
}

#[test]
fn weft_and_wireguard_go_agree_on_a_psk() {
    interop(Some(WgKey([0x42; 32])));
}
