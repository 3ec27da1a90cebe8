#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Measurements, not tests (`#[ignore]`): run with
//! `cargo test --release -p weft-dataplane --test wireguard_bench -- --ignored --nocapture`.
//!
//! - how long a restarted agent takes to have its userspace device back
//!   with 100 peers (`open` + `apply_peers`): it must stay well under a
//!   second;
//! - single-stream TCP throughput (iperf3) between two namespaces through
//!   weft's userspace device and through Debian's wireguard-go, in the same
//!   run (both ends share the machine's cores: compare ratios only).

mod common_wg;

use std::path::Path;
use std::time::{Duration, Instant};

use common_wg::{
    ChildGuard, Node, close, peer, ping_ok, require_root, spec, underlay, unique_dev, weft_device,
};
use weft_core::wg_key::WgKey;
use weft_dataplane::wireguard::{DEFAULT_UAPI_DIR, PathPolicy, WgDevice, WgPeerSpec};

#[test]
#[ignore = "measurement"]
fn open_and_apply_100_peers() {
    require_root();
    for multi_thread in [false, true] {
        let node = Node::new("b1", multi_thread).unwrap();
        let peers: Vec<WgPeerSpec> = (0..100u32)
            .map(|i| {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&i.to_be_bytes());
                let mut p = peer(WgKey(key), 2, 51820, Some(WgKey([9; 32])));
                p.endpoint = format!("192.0.2.{}:51820", i % 250 + 1).parse().unwrap();
                p.allowed_ips = vec![format!("10.244.{}.0/24", i + 2).parse().unwrap()];
                p
            })
            .collect();
        let mut times = Vec::new();
        for _ in 0..5 {
            let spec = spec(&unique_dev("t"), 51820);
            let peers = peers.clone();
            let elapsed = node
                .run(async move {
                    let start = Instant::now();
                    let dev = WgDevice::open(&spec, PathPolicy::Auto, Path::new(DEFAULT_UAPI_DIR))
                        .await?;
                    let changes = dev.apply_peers(&peers).await?;
                    let elapsed = start.elapsed();
                    anyhow::ensure!(changes.added == 100);
                    dev.close().await?;
                    Ok(elapsed)
                })
                .unwrap();
            times.push(elapsed);
        }
        times.sort();
        eprintln!(
            "open + apply_peers(100), {} runtime: median {:?}, max {:?} (5 runs)",
            if multi_thread {
                "multi-thread"
            } else {
                "current-thread"
            },
            times[2],
            times[4]
        );
        assert!(times[2] < Duration::from_secs(1));
    }
}

/// wireguard-go as node `n`, knowing node `peer_n` by `peer_key`.
fn wireguard_go(
    node: &Node,
    n: u8,
    dir: &Path,
    peer_key: WgKey,
    peer_n: u8,
) -> (ChildGuard, WgKey, String) {
    let name = unique_dev("g");
    let (key_file, public) = common_wg::wg_keypair(dir, &format!("key{n}"));
    let child = node.ns.spawn_wireguard_go(&name).unwrap();
    let endpoint = format!("192.0.2.{peer_n}:51820");
    let allowed = format!("10.244.{peer_n}.0/24");
    let key_path = key_file.display().to_string();
    let peer_b64 = peer_key.to_base64();
    node.exec(
        "wg",
        &[
            "set",
            &name,
            "private-key",
            &key_path,
            "listen-port",
            "51820",
            "peer",
            &peer_b64,
            "endpoint",
            &endpoint,
            "allowed-ips",
            &allowed,
        ],
    )
    .unwrap();
    node.exec("ip", &["link", "set", &name, "mtu", "1420", "up"])
        .unwrap();
    node.exec(
        "ip",
        &["addr", "add", &format!("10.244.{n}.0/32"), "dev", &name],
    )
    .unwrap();
    node.exec("ip", &["route", "add", "10.244.0.0/16", "dev", &name])
        .unwrap();
    (child, public, name)
}

/// One iperf3 TCP stream from a to b's 10.244.2.0 for `secs`; Mbit/s.
fn iperf(a: &Node, b: &Node, secs: u32) -> f64 {
    let _server =
        b.ns.spawn("iperf3", &["-s", "-1", "-B", "10.244.2.0"], &[])
            .unwrap();
    // Waits for the listening socket without connecting: `-1` would take a
    // probe connection for its one client.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b
        .ns
        .exec("ss", &["-tnH", "state", "listening", "sport = :5201"])
        .unwrap()
        .trim()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "iperf3 -s did not listen on 5201"
        );
        // Poll interval of the wait for the listener.
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = a
        .exec(
            "iperf3",
            &["-c", "10.244.2.0", "-t", &secs.to_string(), "-J"],
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
        / 1e6
}

fn weft_pair(multi_thread: bool) -> f64 {
    let a = Node::new("wa", multi_thread).unwrap();
    let b = Node::new("wb", multi_thread).unwrap();
    underlay(&a, &b).unwrap();
    let (sa, sb) = (spec(&unique_dev("a"), 51820), spec(&unique_dev("b"), 51820));
    let (pa, pb) = (sa.private_key.public_key(), sb.private_key.public_key());
    let da = weft_device(&a, sa, 1, vec![peer(pb, 2, 51820, None)]).unwrap();
    let db = weft_device(&b, sb, 2, vec![peer(pa, 1, 51820, None)]).unwrap();
    assert!(ping_ok(&a.ns, "10.244.2.0", Duration::from_secs(10)));
    let mbps = iperf(&a, &b, 10);
    close(&a, da).unwrap();
    close(&b, db).unwrap();
    mbps
}

fn wireguard_go_pair() -> f64 {
    let a = Node::new("ga", false).unwrap();
    let b = Node::new("gb", false).unwrap();
    underlay(&a, &b).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Keys are only known once each side exists: give a a placeholder peer
    // first, then fix it up with b's key.
    let (child_a, pub_a, name_a) = wireguard_go(&a, 1, dir.path(), WgKey([1; 32]), 2);
    let (child_b, pub_b, _) = wireguard_go(&b, 2, dir.path(), pub_a, 1);
    let name_a = name_a.as_str();
    let placeholder = WgKey([1; 32]).to_base64();
    let (pub_b64, allowed) = (pub_b.to_base64(), "10.244.2.0/24");
    a.exec("wg", &["set", name_a, "peer", &placeholder, "remove"])
        .unwrap();
    a.exec(
        "wg",
        &[
            "set",
            name_a,
            "peer",
            &pub_b64,
            "endpoint",
            "192.0.2.2:51820",
            "allowed-ips",
            allowed,
        ],
    )
    .unwrap();
    assert!(ping_ok(&a.ns, "10.244.2.0", Duration::from_secs(10)));
    let mbps = iperf(&a, &b, 10);
    drop((child_a, child_b));
    mbps
}

#[test]
#[ignore = "measurement"]
fn throughput_weft_vs_wireguard_go() {
    require_root();
    let go = wireguard_go_pair();
    let weft_mt = weft_pair(true);
    let weft_ct = weft_pair(false);
    let go2 = wireguard_go_pair();
    eprintln!("one iperf3 TCP stream, 10 s, MTU 1420, two namespaces on one host:");
    eprintln!("  wireguard-go          {go:8.0} Mbit/s, again {go2:8.0}");
    eprintln!("  weft (multi-thread)   {weft_mt:8.0} Mbit/s");
    eprintln!("  weft (current-thread) {weft_ct:8.0} Mbit/s");
    let base = (go + go2) / 2.0;
    eprintln!(
        "  ratio weft/wireguard-go: {:.2} (multi-thread), {:.2} (current-thread)",
        weft_mt / base,
        weft_ct / base
    );
}
