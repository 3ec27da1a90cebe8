//! wireguard (flannel-compat §3.4).

use super::*;

fn wg_peer(subnet: &str, ip: &str, key: u8, port: u16) -> (String, Lease) {
    let (id, mut lease) = routed_peer(subnet, ip, "wireguard");
    lease.attrs.backend_data = Some(wg_data(key, port));
    (id, lease)
}

/// Device `i` of `d`, which must be a WireGuard one.
fn wg_device(d: &Desired, i: usize) -> &WgDevicePlan {
    let DeviceSpec::Wireguard(w) = &d.devices[i] else {
        panic!("{d:?}")
    };
    w
}

#[test]
fn wireguard_device_route_and_peers_as_flannel() {
    let c = cfg(
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard","PersistentKeepaliveInterval":25}}"#,
    );
    let peers = [
        wg_peer("10.244.1.0/24", "192.0.2.2", 7, 51820),
        wg_peer("10.244.2.0/24", "198.51.100.9", 8, 0),
    ];
    let d = run(&c, &peers, &underlay()).unwrap();
    assert_eq!(d.mtu, 1420, "underlay MTU − 80");
    let w = wg_device(&d, 0);
    assert_eq!(
        (w.name.as_str(), w.listen_port, w.mtu),
        ("flannel-wg", 51820, 1420)
    );
    assert_eq!(w.addresses, vec!["10.244.6.0/32".parse::<IpNet>().unwrap()]);
    assert_eq!(
        d.routes,
        vec![RoutePlan {
            dst: "10.244.0.0/16".parse().unwrap(),
            target: RouteTarget::Link {
                dev: Dev::Named("flannel-wg".into()),
            },
        }]
    );
    assert_eq!(w.peers.len(), 2);
    assert_eq!(w.peers[0].endpoint.to_string(), "192.0.2.2:51820");
    assert_eq!(
        w.peers[0].allowed_ips,
        vec!["10.244.1.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(w.peers[0].keepalive, Some(25));
    // A peer from flannel < 0.14 publishes no port: ours is used.
    assert_eq!(w.peers[1].endpoint.to_string(), "198.51.100.9:51820");
}

#[test]
fn wireguard_separate_mode_has_a_device_per_family() {
    let c = dual_cfg(r#"{"Type":"wireguard"}"#);
    let peer = with_v6(
        wg_peer("10.244.1.0/24", "192.0.2.2", 7, 51820),
        Some(wg_data(7, 51821)),
    );
    let d = run_dual(&c, &[peer]);
    assert_eq!(device_names(&d), ["flannel-wg", "flannel-wg-v6"]);
    let v6 = wg_device(&d, 1);
    assert_eq!(v6.listen_port, 51821);
    assert_eq!(v6.peers[0].endpoint.to_string(), "[2001:db8::2]:51821");
    assert_eq!(
        v6.peers[0].allowed_ips,
        vec!["fd00:10:244:1::/64".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn wireguard_auto_mode_prefers_public_ipv4_then_global_ipv6() {
    let c = dual_cfg(r#"{"Type":"wireguard","Mode":"auto"}"#);
    let mk = |ip4: &str| with_v6(wg_peer("10.244.1.0/24", ip4, 7, 51820), None);
    let d = run_dual(&c, &[mk("198.51.100.2")]);
    let w = wg_device(&d, 0);
    assert_eq!(d.devices.len(), 1, "one device for both families");
    assert_eq!(w.addresses.len(), 2);
    assert_eq!(
        w.peers[0].endpoint.ip().to_string(),
        "198.51.100.2",
        "public IPv4 wins"
    );
    assert_eq!(w.peers[0].allowed_ips.len(), 2);
    let d = run_dual(&c, &[mk("192.168.1.2")]);
    assert_eq!(
        wg_device(&d, 0).peers[0].endpoint.ip().to_string(),
        "2001:db8::2",
        "private IPv4, global IPv6"
    );
}

#[test]
fn wireguard_peer_without_key_is_skipped() {
    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}"#);
    let (id, lease) = routed_peer("10.244.1.0/24", "192.0.2.2", "wireguard");
    let d = run(&c, &[(id, lease)], &underlay()).unwrap();
    assert!(wg_device(&d, 0).peers.is_empty());
    assert_eq!(d.skipped.len(), 1);
}
