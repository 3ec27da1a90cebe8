#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The kernel path's generic netlink messages, byte for byte against
//! fixtures written by hand from the kernel's `wireguard.h` (see
//! `common_wg/fixtures/README.md`), plus the properties of splitting large
//! peer sets. Where the kernel has WireGuard (and the test runs as root),
//! the kernel path is also run for real; otherwise the test says so.
#![cfg(target_endian = "little")]

mod common_wg;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use weft_core::wg_key::WgKey;
use weft_dataplane::netlink::Netlink;
use weft_dataplane::wireguard::kernel_messages::{
    MESSAGE_BUDGET, apply_peers, configure_device, get_device, parse_get_device,
};
use weft_dataplane::wireguard::{
    DEFAULT_UAPI_DIR, PathPolicy, PrivateKey, WgDevice, WgPeerSpec, WgPeerState,
};

/// The messages of a fixture file: hex, `#` comments, `---` separators.
fn fixture(name: &str) -> Vec<Vec<u8>> {
    let path = format!(
        "{}/tests/common_wg/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut messages = vec![Vec::new()];
    for line in text.lines() {
        if line.starts_with("---") {
            messages.push(Vec::new());
            continue;
        }
        let hex: String = line
            .split('#')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(
            hex.len().is_multiple_of(2),
            "{name}: odd number of hex digits in {line:?}"
        );
        let current = messages.last_mut().unwrap();
        for i in (0..hex.len()).step_by(2) {
            current.push(u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
        }
    }
    messages
}

/// Compares message by message, showing the first differing offset.
fn assert_bytes(got: &[Vec<u8>], want: &[Vec<u8>], case: &str) {
    assert_eq!(got.len(), want.len(), "{case}: number of messages");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            let at = g
                .iter()
                .zip(w)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            panic!(
                "{case}, message {}: differs at byte {at} (lengths {} and {})\n got: {:02x?}\nwant: {:02x?}",
                i + 1,
                g.len(),
                w.len(),
                &g[at.saturating_sub(8)..g.len().min(at + 8)],
                &w[at.saturating_sub(8)..w.len().min(at + 8)],
            );
        }
    }
}

fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn want(key: u8, endpoint: &str, allowed: &[&str]) -> WgPeerSpec {
    WgPeerSpec {
        public_key: WgKey([key; 32]),
        endpoint: ep(endpoint),
        allowed_ips: nets(allowed),
        psk: None,
        keepalive: None,
    }
}

fn have(spec: &WgPeerSpec) -> WgPeerState {
    WgPeerState {
        public_key: spec.public_key,
        endpoint: Some(spec.endpoint),
        allowed_ips: spec.allowed_ips.clone(),
        psk: spec.psk,
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
        keepalive: spec.keepalive,
    }
}

#[test]
fn first_configuration_sets_key_port_and_replaces_peers() {
    let key = PrivateKey::from_bytes([0xa1; 32]);
    let got = vec![configure_device("flannel-wg", &key, 51820, true)];
    assert_bytes(&got, &fixture("set-device-first.hex"), "first SET_DEVICE");
    let got = vec![configure_device("flannel-wg", &key, 51820, false)];
    assert_bytes(
        &got,
        &fixture("set-device-reused.hex"),
        "SET_DEVICE of a reused device",
    );
}

#[test]
fn get_device_names_the_device() {
    assert_bytes(
        &[get_device("flannel-wg")],
        &fixture("get-device.hex"),
        "GET_DEVICE",
    );
}

#[test]
fn peers_are_added_updated_and_removed_incrementally() {
    let k2 = want(2, "192.0.2.2:51820", &["10.244.2.0/24"]);
    let k3 = want(3, "192.0.2.3:51820", &["10.244.3.0/24"]);
    let k5 = want(5, "192.0.2.5:51820", &["10.244.5.0/24"]);
    let actual = vec![have(&k2), have(&k3), have(&k5)];

    let mut k3_moved = k3.clone();
    k3_moved.endpoint = ep("192.0.2.33:51820");
    let mut k4 = want(4, "192.0.2.4:51820", &["10.244.4.0/24"]);
    k4.psk = Some(WgKey([0x44; 32]));
    k4.keepalive = Some(25);
    let k5_dual = want(
        5,
        "192.0.2.5:51820",
        &["fd00:10:244:5::/64", "10.244.5.0/24"],
    );
    let desired = vec![k3_moved, k4, k5_dual];

    let got = apply_peers("flannel-wg", &actual, &desired, None, MESSAGE_BUDGET).unwrap();
    assert_bytes(&got, &fixture("peers-incremental.hex"), "incremental peers");

    // Applied, the same input asks for nothing.
    let applied: Vec<WgPeerState> = desired.iter().map(have).collect();
    assert!(
        apply_peers("flannel-wg", &applied, &desired, None, MESSAGE_BUDGET)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_large_change_is_split_and_a_long_peer_continued() {
    let q1 = want(
        0x11,
        "192.0.2.11:51820",
        &[
            "10.1.0.0/24",
            "10.2.0.0/24",
            "10.3.0.0/24",
            "10.4.0.0/24",
            "10.5.0.0/24",
        ],
    );
    let q2 = want(0x12, "192.0.2.12:51820", &["10.12.0.0/24"]);
    let q3 = want(0x13, "192.0.2.13:51820", &["10.13.0.0/24"]);
    let got = apply_peers("flannel-wg", &[], &[q1, q2, q3], None, 200).unwrap();
    assert_bytes(&got, &fixture("peers-split.hex"), "split peers");
}

#[test]
fn a_dump_answer_is_read_and_a_continued_peer_merged() {
    let peers = parse_get_device(&fixture("get-device-reply.hex")).unwrap();
    assert_eq!(peers.len(), 2);
    let r1 = &peers[0];
    assert_eq!(r1.public_key, WgKey([0x21; 32]));
    assert_eq!(r1.endpoint, Some(ep("192.0.2.2:51820")));
    assert_eq!(
        r1.allowed_ips,
        nets(&["10.244.2.0/24", "fd00:10:244:2::/64"])
    );
    assert_eq!(r1.psk, None);
    assert_eq!(r1.keepalive, None);
    assert_eq!(
        r1.last_handshake,
        Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000))
    );
    assert_eq!((r1.rx_bytes, r1.tx_bytes), (1000, 2000));
    let r2 = &peers[1];
    assert_eq!(r2.public_key, WgKey([0x22; 32]));
    assert_eq!(r2.endpoint, None);
    assert_eq!(r2.psk, Some(WgKey([0x55; 32])));
    assert_eq!(r2.keepalive, Some(25));
    assert_eq!(r2.last_handshake, None);
    assert_eq!(r2.allowed_ips, nets(&["10.244.3.0/24"]));
}

/// Ten thousand peers, one with two thousand networks: every message within
/// the budget, and the messages, read back, say exactly what was asked.
#[test]
fn splitting_keeps_every_peer_and_network_exactly_once() {
    let mut desired: Vec<WgPeerSpec> = (0..10_000u32)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            key[31] = 1;
            WgPeerSpec {
                public_key: WgKey(key),
                endpoint: SocketAddr::from(([192, 0, 2, (i % 250) as u8 + 1], 51820)),
                allowed_ips: vec![format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()],
                psk: Some(WgKey([7; 32])),
                keepalive: Some(25),
            }
        })
        .collect();
    desired[5000].allowed_ips = (0..2000u32)
        .map(|i| {
            format!("172.{}.{}.0/24", 16 + i / 256, i % 256)
                .parse()
                .unwrap()
        })
        .collect();

    let messages = apply_peers("flannel-wg", &[], &desired, None, MESSAGE_BUDGET).unwrap();
    assert!(messages.iter().all(|m| m.len() <= MESSAGE_BUDGET));
    assert!(messages.len() > 1);
    let back = parse_get_device(&messages).unwrap();
    assert_eq!(
        back.len(),
        desired.len(),
        "a peer was lost or split into two"
    );
    let by_key: BTreeMap<WgKey, &WgPeerState> = back.iter().map(|p| (p.public_key, p)).collect();
    for spec in &desired {
        let got = by_key[&spec.public_key];
        let mut want_nets = spec.allowed_ips.clone();
        want_nets.sort();
        let mut got_nets = got.allowed_ips.clone();
        got_nets.sort();
        assert_eq!(got_nets, want_nets, "networks of {}", spec.public_key);
        assert_eq!(got.endpoint, Some(spec.endpoint));
        assert_eq!(got.psk, spec.psk);
    }
    eprintln!(
        "10000 peers (+2000 networks on one): {} SET_DEVICE messages of at most {} bytes",
        messages.len(),
        MESSAGE_BUDGET
    );
}

/// Runs the kernel path against the kernel's WireGuard: in the
/// Debian-kernel VM (scripts/vm-test.sh); ignored on the host, whose kernel
/// has no module. Without the module it fails: it must not pass vacuously.
#[test]
#[ignore = "needs the WireGuard module: scripts/vm-test.sh runs it in the Debian-kernel VM"]
fn kernel_path_against_the_kernel() {
    common_wg::require_root();
    let node = common_wg::Node::new("kg", false).unwrap();
    let name = common_wg::unique_dev("k");
    let probe = name.clone();
    let supported = node
        .run(async move {
            let nl = Netlink::connect()?;
            match nl.create_wireguard(&probe, None).await {
                Ok(index) => {
                    nl.delete_link(index).await?;
                    Ok(true)
                }
                Err(e) if e.is_not_supported() => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .unwrap();
    assert!(supported, "this kernel has no WireGuard module");
    let spec = common_wg::spec(&name, 51820);
    let device_spec = spec.clone();
    let dev = node
        .run(async move {
            let spec = device_spec;
            let dev =
                WgDevice::open(&spec, PathPolicy::KernelOnly, Path::new(DEFAULT_UAPI_DIR)).await?;
            Ok(Arc::new(dev))
        })
        .unwrap();
    let peers = vec![
        want(2, "192.0.2.2:51820", &["10.244.2.0/24"]),
        want(
            3,
            "192.0.2.3:51820",
            &["10.244.3.0/24", "fd00:10:244:3::/64"],
        ),
    ];
    let own = spec.private_key.public_key();
    let ours = peers.iter().filter(|p| own < p.public_key).count();
    let d = dev.clone();
    let (first, second, primed, again, state) = node
        .run(async move {
            let first = d.apply_peers(&peers).await?;
            let second = d.apply_peers(&peers).await?;
            let primed = d.open_sessions().await?;
            let again = d.open_sessions().await?;
            Ok((first, second, primed, again, d.peers().await?))
        })
        .unwrap();
    assert_eq!(first.added, 2);
    assert!(second.is_empty());
    // The sessions this end owes are started once (the others wait 5 s).
    assert_eq!(primed, ours);
    assert_eq!(again, 0);
    assert_eq!(state.len(), 2);
    let (_, _, dump) = common_wg::wg_dump(&node.ns, &name).unwrap();
    assert_eq!(dump.len(), 2);
    let dev = Arc::into_inner(dev).unwrap();
    let index = dev.index();
    node.run(async move {
        dev.close().await?;
        Ok(Netlink::connect()?.delete_link(index).await?)
    })
    .unwrap();
}

/// Of two kernel nodes only the lower public key starts a new pair's
/// session: a peer whose key sorts above ours is added with its keepalive
/// (which makes the kernel initiate), one below us without (it starts the
/// session; crossed initiations would cost both ends 5 s or more).
#[test]
fn only_the_lower_key_adds_a_peer_with_its_keepalive() {
    let mut below = want(2, "192.0.2.2:51820", &["10.244.2.0/24"]);
    below.keepalive = Some(25);
    let mut above = want(4, "192.0.2.4:51820", &["10.244.4.0/24"]);
    above.keepalive = Some(25);
    let own = Some(WgKey([3; 32]));
    let messages = apply_peers("flannel-wg", &[], &[below, above], own, MESSAGE_BUDGET).unwrap();
    let added = parse_get_device(&messages).unwrap();
    let keepalive_of = |key: u8| {
        added
            .iter()
            .find(|p| p.public_key == WgKey([key; 32]))
            .map(|p| p.keepalive)
    };
    assert_eq!(
        keepalive_of(2),
        Some(None),
        "the lower end starts: no keepalive here yet"
    );
    assert_eq!(
        keepalive_of(4),
        Some(Some(25)),
        "ours to start: added whole"
    );
    // Without a key (either end may start) both are added whole.
    let both = want(2, "192.0.2.2:51820", &["10.244.2.0/24"]);
    let mut both = vec![both];
    both[0].keepalive = Some(25);
    let messages = apply_peers("flannel-wg", &[], &both, None, MESSAGE_BUDGET).unwrap();
    assert_eq!(parse_get_device(&messages).unwrap()[0].keepalive, Some(25));
}
