//! ipsec: one tunnel per peer, no device, no route; flannel's names.

use super::*;

const PSK: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

fn ipsec_cfg(extra: &str) -> NetConfig {
    cfg(&format!(
        r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"ipsec","PSK":"{PSK}"{extra}}}}}"#
    ))
}

#[test]
fn one_tunnel_per_peer_with_flannels_names_and_mtu() {
    let c = ipsec_cfg("");
    let peers = [
        routed_peer("10.244.1.0/24", "192.0.2.2", "ipsec"),
        routed_peer("10.244.2.0/24", "198.51.100.7", "ipsec"),
    ];
    let d = run(&c, &peers, &underlay()).unwrap();
    assert_eq!(d.mtu, 1500 - 77);
    assert!(d.devices.is_empty() && d.routes.is_empty(), "{d:?}");
    assert_eq!(d.ipsec.len(), 2);
    let t = &d.ipsec[0];
    assert_eq!(t.local_public, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(t.remote_public, Ipv4Addr::new(192, 0, 2, 2));
    assert_eq!(
        t.conn_name(),
        "192.0.2.1-10.244.6.0/24-10.244.1.0/24-192.0.2.2"
    );
    assert_eq!(t.child_name(), "10.244.6.0/24-10.244.1.0/24");
    assert_eq!(
        crate::plan::parse_conn_name(&t.conn_name()),
        Some((
            t.local_public,
            t.local_subnet,
            t.remote_subnet,
            t.remote_public
        ))
    );
    // Off-link peers are fine: ESP is routed like any packet.
    assert_eq!(d.ipsec[1].remote_public, Ipv4Addr::new(198, 51, 100, 7));

    let d = run(&ipsec_cfg(r#","UDPEncap":true"#), &peers, &underlay()).unwrap();
    assert_eq!(d.mtu, 1500 - 85);
}

#[test]
fn names_that_are_not_flannels_are_not_ours() {
    for name in [
        "",
        "swanctl-conn",
        "1.2.3.4-10.0.0.0/24-10.0.1.0/24",
        "a-b-c-d",
    ] {
        assert_eq!(crate::plan::parse_conn_name(name), None, "{name}");
    }
}

#[test]
fn a_peer_claiming_our_public_ip_gets_no_tunnel() {
    let c = ipsec_cfg("");
    let peers = [routed_peer("10.244.1.0/24", "192.0.2.1", "ipsec")];
    let d = run(&c, &peers, &underlay()).unwrap();
    assert!(d.ipsec.is_empty());
    assert!(d.skipped[0].1.contains("own"), "{:?}", d.skipped);
}
