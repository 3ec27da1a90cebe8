#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One userspace device in a fresh namespace: path selection, peers set and
//! reconciled, cross-checked with `wg show <dev> dump` over the UAPI socket.
//! Needs root; skips otherwise.

mod common_wg;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common_wg::{Node, address_and_route, peer, require_root, spec, unique_dev, wg_dump};
use weft_core::wg_key::WgKey;
use weft_dataplane::wireguard::{
    DEFAULT_UAPI_DIR, PathPolicy, PeerChanges, PrivateKey, WgDevice, WgDeviceSpec, WgError, WgPath,
};

fn key(n: u8) -> WgKey {
    PrivateKey::from_bytes([n; 32]).public_key()
}

/// `WgDevice::open` of `spec` with `policy` and the default UAPI directory,
/// on `node`: what it answered.
fn open_on(node: &Node, spec: WgDeviceSpec, policy: PathPolicy) -> Result<WgDevice, WgError> {
    node.run(async move { Ok(WgDevice::open(&spec, policy, Path::new(DEFAULT_UAPI_DIR)).await) })
        .unwrap()
}

#[test]
fn kernel_only_fails_clearly_without_the_module() {
    require_root();
    let node = Node::new("ko", false).unwrap();
    let spec = spec(&unique_dev("k"), 51820);
    match open_on(&node, spec, PathPolicy::KernelOnly) {
        Err(e @ WgError::KernelUnavailable { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("KernelOnly") && m.contains("load the wireguard module"),
                "{m}"
            );
            assert!(m.contains("allow the userspace path"), "{m}");
        }
        Err(e) => panic!("expected KernelUnavailable, got {e}"),
        Ok(dev) => {
            eprintln!(
                "the kernel has WireGuard here: KernelOnly opened {}",
                dev.name()
            );
            node.run(async move { Ok(dev.close().await?) }).unwrap();
        }
    }
}

#[test]
fn userspace_device_peers_are_reconciled_and_visible_to_wg() {
    require_root();
    let node = Node::new("us", false).unwrap();
    let name = unique_dev("u");
    let spec = spec(&name, 51820);
    let own_public = spec.private_key.public_key();
    let dev = node
        .run(async move {
            let dev = WgDevice::open(&spec, PathPolicy::Auto, Path::new(DEFAULT_UAPI_DIR)).await?;
            address_and_route(&dev, 1).await?;
            Ok(Arc::new(dev))
        })
        .unwrap();
    if dev.path() == WgPath::Kernel {
        eprintln!("the kernel has WireGuard here: Auto took the kernel path");
    } else {
        let socket = PathBuf::from(DEFAULT_UAPI_DIR).join(format!("{name}.sock"));
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the UAPI socket answers with the private key");
    }
    let addrs = node.exec("ip", &["-br", "addr", "show", &name]).unwrap();
    assert!(addrs.contains("10.244.1.0/32"), "{addrs}");
    let mtu = node
        .exec("cat", &[&format!("/sys/class/net/{name}/mtu")])
        .unwrap();
    assert_eq!(mtu.trim(), "1420");

    let mut desired = vec![
        peer(key(2), 2, 51820, None),
        peer(key(3), 3, 51820, Some(WgKey([0x33; 32]))),
        peer(key(4), 4, 51820, None),
    ];
    desired[2].keepalive = Some(25);
    desired[2]
        .allowed_ips
        .push("fd00:10:244:4::/64".parse().unwrap());

    let apply = |desired: Vec<_>| {
        let dev = dev.clone();
        node.run(async move { Ok(dev.apply_peers(&desired).await?) })
            .unwrap()
    };
    assert_eq!(
        apply(desired.clone()),
        PeerChanges {
            added: 3,
            updated: 0,
            removed: 0
        }
    );
    assert!(
        apply(desired.clone()).is_empty(),
        "second pass changed something"
    );

    let (public, port, peers) = wg_dump(&node.ns, &name).unwrap();
    assert_eq!(public, own_public.to_base64());
    assert_eq!(port, 51820);
    assert_eq!(peers.len(), 3);
    for want in &desired {
        let got = peers
            .iter()
            .find(|p| p.public_key == want.public_key.to_base64())
            .unwrap_or_else(|| panic!("wg does not list {}", want.public_key));
        assert_eq!(got.endpoint, want.endpoint.to_string());
        let mut nets: Vec<String> = want.allowed_ips.iter().map(|n| n.to_string()).collect();
        nets.sort();
        assert_eq!(got.allowed_ips, nets);
        assert_eq!(got.has_psk, want.psk.is_some());
        let keepalive = want.keepalive.map_or("off".to_string(), |k| k.to_string());
        assert_eq!(got.keepalive, keepalive);
    }

    // One peer gone, one moved: exactly two changes, reflected in wg.
    let mut next = desired.clone();
    next.remove(0);
    next[0].endpoint = "192.0.2.33:51999".parse().unwrap();
    assert_eq!(
        apply(next.clone()),
        PeerChanges {
            added: 0,
            updated: 1,
            removed: 1
        }
    );
    let (_, _, peers) = wg_dump(&node.ns, &name).unwrap();
    assert_eq!(peers.len(), 2);
    assert!(!peers.iter().any(|p| p.public_key == key(2).to_base64()));
    let moved = peers
        .iter()
        .find(|p| p.public_key == key(3).to_base64())
        .unwrap();
    assert_eq!(moved.endpoint, "192.0.2.33:51999");
    assert!(moved.has_psk, "an endpoint change must not touch the PSK");

    // An external tool configures the device through the socket; the next
    // pass takes the device back to what weft wants.
    let stranger = key(9).to_base64();
    node.exec(
        "wg",
        &[
            "set",
            &name,
            "peer",
            &stranger,
            "allowed-ips",
            "10.244.9.0/24",
        ],
    )
    .unwrap();
    let state = {
        let dev = dev.clone();
        node.run(async move { Ok(dev.peers().await?) }).unwrap()
    };
    assert!(state.iter().any(|p| p.public_key == key(9)));
    assert_eq!(apply(next.clone()).removed, 1);
    assert!(apply(next).is_empty());

    let dev = Arc::into_inner(dev).unwrap();
    node.run(async move { Ok(dev.close().await?) }).unwrap();
    let socket = PathBuf::from(DEFAULT_UAPI_DIR).join(format!("{name}.sock"));
    assert!(!socket.exists(), "close left the UAPI socket behind");
    let links = node.exec("ip", &["-br", "link"]).unwrap();
    assert!(
        !links.contains(&name),
        "close left the TUN link behind: {links}"
    );
}

#[test]
fn uapi_dir_is_a_parameter_and_a_stale_socket_is_replaced() {
    require_root();
    let node = Node::new("ud", false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = unique_dev("d");
    let socket = dir.path().join(format!("{name}.sock"));
    std::fs::write(&socket, "stale").unwrap();

    let spec = spec(&name, 51820);
    let public = spec.private_key.public_key();
    let uapi_dir = dir.path().to_path_buf();
    let dev = node
        .run(async move { Ok(WgDevice::open(&spec, PathPolicy::UserspaceOnly, &uapi_dir).await?) })
        .unwrap();
    assert_eq!(dev.path(), WgPath::Userspace);

    // Speak the UAPI protocol directly, as wg does. The answer holds the
    // private key: only the fields checked are ever looked at.
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.write_all(b"get=1\n\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.lines().any(|l| l == "listen_port=51820"),
        "no listen_port in the answer"
    );
    assert!(
        answer.lines().any(|l| l == "errno=0"),
        "no errno=0 in the answer"
    );
    let private_hex = answer
        .lines()
        .find_map(|l| l.strip_prefix("private_key="))
        .expect("the answer has a private key");
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&private_hex[2 * i..2 * i + 2], 16).unwrap();
    }
    assert!(
        PrivateKey::from_bytes(bytes).public_key() == public,
        "the device does not hold the key it was given"
    );

    node.run(async move { Ok(dev.close().await?) }).unwrap();
    assert!(!socket.exists());
}

#[test]
fn a_foreign_link_of_that_name_is_refused() {
    require_root();
    let node = Node::new("fl", false).unwrap();
    let name = unique_dev("f");
    node.exec("ip", &["link", "add", &name, "type", "bridge"])
        .unwrap();
    let spec = spec(&name, 51820);
    let err = open_on(&node, spec, PathPolicy::Auto).unwrap_err();
    assert!(matches!(err, WgError::NameTaken { .. }), "{err}");
    assert!(err.to_string().contains("bridge"), "{err}");
}

#[test]
fn a_live_device_is_not_opened_twice_and_its_name_is_free_after_close() {
    require_root();
    let node = Node::new("tw", false).unwrap();
    let name = unique_dev("t");
    let (first, second, third) = (spec(&name, 51820), spec(&name, 51821), spec(&name, 51820));
    let first_public = first.private_key.public_key();
    let dev = open_on(&node, first, PathPolicy::Auto).unwrap();
    let err = open_on(&node, second, PathPolicy::Auto).unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
    eprintln!("second open: {err}");
    // The failed attempt must not have taken the first device's socket.
    let (public, _, _) = wg_dump(&node.ns, &name).unwrap();
    assert_eq!(public, first_public.to_base64());
    node.run(async move { Ok(dev.close().await?) }).unwrap();
    // A restarting agent opens the same name right after closing it.
    let dev = open_on(&node, third, PathPolicy::Auto).unwrap();
    node.run(async move { Ok(dev.close().await?) }).unwrap();
}

#[test]
fn a_socket_served_by_another_node_is_not_taken_over() {
    require_root();
    // Two lab nodes, same device name, same socket directory.
    let (a, b) = (
        Node::new("sa", false).unwrap(),
        Node::new("sb", false).unwrap(),
    );
    let name = unique_dev("s");
    let (spec_a, spec_b) = (spec(&name, 51820), spec(&name, 51820));
    let public_a = spec_a.private_key.public_key();
    let dev_a = open_on(&a, spec_a, PathPolicy::Auto).unwrap();
    let err = open_on(&b, spec_b, PathPolicy::Auto).unwrap_err();
    assert!(matches!(err, WgError::Uapi { .. }), "{err}");
    assert!(err.to_string().contains("own UAPI directory"), "{err}");
    let (public, _, _) = wg_dump(&a.ns, &name).unwrap();
    assert_eq!(public, public_a.to_base64(), "b took a's socket over");
    a.run(async move { Ok(dev_a.close().await?) }).unwrap();
}
