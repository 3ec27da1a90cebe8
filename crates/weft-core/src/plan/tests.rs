//! The planner against flannel's documented behaviour (flannel-compat §3)
//! and the state captured from a real flannel node (flannel-golden).

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::backend_data::VxlanData;
use crate::lease::LeaseAttrs;
use crate::netconf;

fn cfg(json: &str) -> NetConfig {
    netconf::parse(json).unwrap()
}

fn underlay() -> Underlay {
    Underlay {
        index: 2,
        name: "eth0".into(),
        mtu: 1500,
        addr_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        addr_v6: Some("2001:db8::1".parse().unwrap()),
        connected: vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
        ],
    }
}

fn own() -> LeaseSubnets {
    LeaseSubnets {
        v4: Some("10.244.6.0/24".parse().unwrap()),
        v6: None,
    }
}

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

fn local() -> LocalIdentity {
    LocalIdentity {
        vtep_mac_v4: Some(mac("1e:1f:68:f0:dd:61")),
        vtep_mac_v6: Some(mac("1e:1f:68:f0:dd:62")),
    }
}

fn vxlan_peer(subnet: &str, ip: &str, vtep: &str) -> (String, Lease) {
    let data = VxlanData {
        vni: 1,
        vtep_mac: mac(vtep),
    };
    (
        format!("/coreos.com/network/subnets/{}", subnet.replace('/', "-")),
        Lease {
            subnets: LeaseSubnets {
                v4: Some(subnet.parse().unwrap()),
                v6: None,
            },
            attrs: LeaseAttrs {
                public_ip: Some(ip.parse().unwrap()),
                backend_type: "vxlan".into(),
                backend_data: Some(data.encode()),
                ..Default::default()
            },
            expiration: None,
        },
    )
}

fn routed_peer(subnet: &str, ip: &str, kind: &str) -> (String, Lease) {
    let (id, mut lease) = vxlan_peer(subnet, ip, "02:00:00:00:00:01");
    lease.attrs.backend_type = kind.into();
    lease.attrs.backend_data = None;
    (id, lease)
}

fn run(c: &NetConfig, peers: &[(String, Lease)], u: &Underlay) -> Result<Desired, PlanError> {
    plan(&PlanInput {
        cfg: c,
        own: &own(),
        underlay: u,
        local: &local(),
        peers,
        blackhole: false,
    })
}

fn via(gateway: &str, dev: Dev, onlink: bool) -> RouteTarget {
    RouteTarget::Via {
        gateway: gateway.parse().unwrap(),
        dev,
        onlink,
    }
}

#[test]
fn vxlan_matches_the_golden_flannel_node() {
    // flannel-golden: node 1 (192.0.2.1, 10.244.6.0/24) and its peer node 2.
    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
    let peers = [vxlan_peer(
        "10.244.1.0/24",
        "192.0.2.2",
        "2e:1d:8b:97:dc:f0",
    )];
    let d = run(&c, &peers, &underlay()).unwrap();
    assert_eq!(d.mtu, 1450);
    assert_eq!(
        d.devices,
        vec![DeviceSpec::Vxlan(VxlanDevice {
            name: "flannel.1".into(),
            vni: 1,
            port: 8472,
            local: "192.0.2.1".parse().unwrap(),
            underlay_index: 2,
            mtu: 1450,
            mac: mac("1e:1f:68:f0:dd:61"),
            gbp: false,
            learning: false,
            tx_checksum_offload: false,
            address: "10.244.6.0/32".parse().unwrap(),
        })]
    );
    // neigh-vxlan.txt: 10.244.1.0 lladdr 2e:1d:8b:97:dc:f0 PERMANENT
    assert_eq!(
        d.neighbours,
        vec![NeighPlan {
            dev: "flannel.1".into(),
            ip: "10.244.1.0".parse().unwrap(),
            mac: mac("2e:1d:8b:97:dc:f0"),
        }]
    );
    // fdb-vxlan.txt: 2e:1d:8b:97:dc:f0 dst 192.0.2.2 self permanent
    assert_eq!(
        d.fdb,
        vec![FdbPlan {
            dev: "flannel.1".into(),
            mac: mac("2e:1d:8b:97:dc:f0"),
            dst: "192.0.2.2".parse().unwrap(),
        }]
    );
    // routes-vxlan.txt: 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
    assert_eq!(
        d.routes,
        vec![RoutePlan {
            dst: "10.244.1.0/24".parse().unwrap(),
            target: via("10.244.1.0", Dev::Named("flannel.1".into()), true),
        }]
    );
}

#[test]
fn vxlan_mtu_follows_backend_mtu_then_underlay() {
    let c = cfg(
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","MTU":9000,"VNI":4,"Port":4789}}"#,
    );
    let d = run(&c, &[], &underlay()).unwrap();
    assert_eq!(d.mtu, 8950);
    let DeviceSpec::Vxlan(dev) = &d.devices[0] else {
        panic!()
    };
    assert_eq!(
        (dev.name.as_str(), dev.vni, dev.port, dev.mtu),
        ("flannel.4", 4, 4789, 8950)
    );

    let mut small = underlay();
    small.mtu = 1400;
    let c = cfg(r#"{"Network":"10.244.0.0/16"}"#);
    assert_eq!(run(&c, &[], &small).unwrap().mtu, 1350);
    small.mtu = 100;
    assert!(matches!(
        run(&c, &[], &small),
        Err(PlanError::MtuTooSmall { .. })
    ));
}

#[test]
fn vxlan_direct_routing_only_for_on_link_peers() {
    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#);
    let peers = [
        vxlan_peer("10.244.1.0/24", "192.0.2.2", "2e:1d:8b:97:dc:f0"),
        vxlan_peer("10.244.2.0/24", "198.51.100.7", "2e:1d:8b:97:dc:f1"),
    ];
    let d = run(&c, &peers, &underlay()).unwrap();
    assert!(d.routes.contains(&RoutePlan {
        dst: "10.244.1.0/24".parse().unwrap(),
        target: via("192.0.2.2", Dev::Underlay, false),
    }));
    assert!(d.routes.contains(&RoutePlan {
        dst: "10.244.2.0/24".parse().unwrap(),
        target: via("10.244.2.0", Dev::Named("flannel.1".into()), true),
    }));
    assert_eq!(
        d.neighbours.len(),
        1,
        "the direct peer needs no neighbour entry"
    );
    assert_eq!(d.fdb.len(), 1);
}

#[test]
fn vxlan_dual_stack_has_a_device_per_family() {
    let c = cfg(
        r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}"#,
    );
    let own = LeaseSubnets {
        v4: Some("10.244.6.0/24".parse().unwrap()),
        v6: Some("fd00:10:244:6::/64".parse().unwrap()),
    };
    let (id, mut lease) = vxlan_peer("10.244.1.0/24", "192.0.2.2", "2e:1d:8b:97:dc:f0");
    lease.subnets.v6 = Some("fd00:10:244:1::/64".parse().unwrap());
    lease.attrs.public_ipv6 = Some("2001:db8::2".parse().unwrap());
    lease.attrs.backend_v6_data = Some(
        VxlanData {
            vni: 1,
            vtep_mac: mac("2e:1d:8b:97:dc:f6"),
        }
        .encode(),
    );
    let d = plan(&PlanInput {
        cfg: &c,
        own: &own,
        underlay: &underlay(),
        local: &local(),
        peers: &[(id, lease)],
        blackhole: false,
    })
    .unwrap();
    let names: Vec<&str> = d.devices.iter().map(|x| x.name()).collect();
    assert_eq!(names, ["flannel.1", "flannel-v6.1"]);
    let DeviceSpec::Vxlan(v6) = &d.devices[1] else {
        panic!()
    };
    assert_eq!(v6.address.to_string(), "fd00:10:244:6::/128");
    assert_eq!(v6.local, "2001:db8::1".parse::<IpAddr>().unwrap());
    assert_eq!(
        v6.mtu, 1430,
        "the kernel's cap for vxlan over IPv6: underlay − 70"
    );
    assert_eq!(d.mtu, 1430, "pods get the smaller tunnel's MTU");
    assert!(d.fdb.contains(&FdbPlan {
        dev: "flannel-v6.1".into(),
        mac: mac("2e:1d:8b:97:dc:f6"),
        dst: "2001:db8::2".parse().unwrap(),
    }));
    assert!(d.routes.contains(&RoutePlan {
        dst: "fd00:10:244:1::/64".parse().unwrap(),
        target: via("fd00:10:244:1::", Dev::Named("flannel-v6.1".into()), true),
    }));
}

#[test]
fn vxlan_peer_with_bad_data_is_skipped_not_programmed() {
    let c = cfg(r#"{"Network":"10.244.0.0/16"}"#);
    let (id, mut lease) = vxlan_peer("10.244.1.0/24", "192.0.2.2", "2e:1d:8b:97:dc:f0");
    lease.attrs.backend_data = None;
    let d = run(&c, &[(id, lease)], &underlay()).unwrap();
    assert!(d.routes.is_empty() && d.neighbours.is_empty() && d.fdb.is_empty());
    assert_eq!(d.skipped.len(), 1);
}

#[test]
fn host_gw_routes_on_link_peers_and_names_the_others() {
    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
    let peers = [
        routed_peer("10.244.1.0/24", "192.0.2.2", "host-gw"),
        routed_peer("10.244.2.0/24", "198.51.100.7", "host-gw"),
    ];
    let d = run(&c, &peers, &underlay()).unwrap();
    assert_eq!(d.mtu, 1500);
    assert!(d.devices.is_empty());
    assert_eq!(
        d.routes,
        vec![RoutePlan {
            dst: "10.244.1.0/24".parse().unwrap(),
            target: via("192.0.2.2", Dev::Underlay, false),
        }]
    );
    assert_eq!(d.skipped.len(), 1);
    assert!(d.skipped[0].0.contains("10.244.2.0-24"));
    assert!(d.skipped[0].1.contains("198.51.100.7") && d.skipped[0].1.contains("layer-2"));
}

#[test]
fn ipip_uses_the_tunnel_unless_direct() {
    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}"#);
    let peers = [routed_peer("10.244.1.0/24", "192.0.2.2", "ipip")];
    let d = run(&c, &peers, &underlay()).unwrap();
    assert_eq!(d.mtu, 1480);
    assert_eq!(
        d.devices,
        vec![DeviceSpec::Ipip(IpipDevice {
            name: "flannel.ipip".into(),
            local: Ipv4Addr::new(192, 0, 2, 1),
            mtu: 1480,
            address: "10.244.6.0/32".parse().unwrap(),
        })]
    );
    assert_eq!(
        d.routes[0].target,
        via("192.0.2.2", Dev::Named("flannel.ipip".into()), true)
    );

    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"ipip","DirectRouting":true}}"#);
    let d = run(&c, &peers, &underlay()).unwrap();
    assert_eq!(d.routes[0].target, via("192.0.2.2", Dev::Underlay, true));
}

#[test]
fn none_programs_nothing_and_blackhole_is_optional() {
    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"none"}}"#);
    let d = run(
        &c,
        &[routed_peer("10.244.1.0/24", "192.0.2.2", "")],
        &underlay(),
    )
    .unwrap();
    assert_eq!(
        d,
        Desired {
            mtu: 1500,
            ..Desired::default()
        }
    );
    let d = plan(&PlanInput {
        cfg: &c,
        own: &own(),
        underlay: &underlay(),
        local: &local(),
        peers: &[],
        blackhole: true,
    })
    .unwrap();
    assert_eq!(
        d.routes,
        vec![RoutePlan {
            dst: "10.244.6.0/24".parse().unwrap(),
            target: RouteTarget::Blackhole,
        }]
    );
}

#[test]
fn vxlan_without_a_tunnel_source_is_an_error() {
    let c = cfg(r#"{"Network":"10.244.0.0/16"}"#);
    let mut u = underlay();
    u.addr_v4 = None;
    assert!(matches!(
        run(&c, &[], &u),
        Err(PlanError::NoTunnelSource { .. })
    ));
}

fn wg_peer(subnet: &str, ip: &str, key: u8, port: u16) -> (String, Lease) {
    let (id, mut lease) = routed_peer(subnet, ip, "wireguard");
    lease.attrs.backend_data = Some(
        crate::backend_data::WireguardData {
            public_key: crate::wg_key::WgKey([key; 32]),
            port,
        }
        .encode(),
    );
    (id, lease)
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
    let DeviceSpec::Wireguard(w) = &d.devices[0] else {
        panic!("{d:?}")
    };
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
    let c = cfg(
        r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"wireguard"}}"#,
    );
    let own = LeaseSubnets {
        v4: Some("10.244.6.0/24".parse().unwrap()),
        v6: Some("fd00:10:244:6::/64".parse().unwrap()),
    };
    let (id, mut lease) = wg_peer("10.244.1.0/24", "192.0.2.2", 7, 51820);
    lease.subnets.v6 = Some("fd00:10:244:1::/64".parse().unwrap());
    lease.attrs.public_ipv6 = Some("2001:db8::2".parse().unwrap());
    lease.attrs.backend_v6_data = Some(
        crate::backend_data::WireguardData {
            public_key: crate::wg_key::WgKey([7; 32]),
            port: 51821,
        }
        .encode(),
    );
    let d = plan(&PlanInput {
        cfg: &c,
        own: &own,
        underlay: &underlay(),
        local: &local(),
        peers: &[(id, lease)],
        blackhole: false,
    })
    .unwrap();
    let names: Vec<&str> = d.devices.iter().map(|x| x.name()).collect();
    assert_eq!(names, ["flannel-wg", "flannel-wg-v6"]);
    let DeviceSpec::Wireguard(v6) = &d.devices[1] else {
        panic!()
    };
    assert_eq!(v6.listen_port, 51821);
    assert_eq!(v6.peers[0].endpoint.to_string(), "[2001:db8::2]:51821");
    assert_eq!(
        v6.peers[0].allowed_ips,
        vec!["fd00:10:244:1::/64".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn wireguard_auto_mode_prefers_public_ipv4_then_global_ipv6() {
    let c = cfg(
        r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"wireguard","Mode":"auto"}}"#,
    );
    let own = LeaseSubnets {
        v4: Some("10.244.6.0/24".parse().unwrap()),
        v6: Some("fd00:10:244:6::/64".parse().unwrap()),
    };
    let mk = |ip4: &str| {
        let (id, mut lease) = wg_peer("10.244.1.0/24", ip4, 7, 51820);
        lease.subnets.v6 = Some("fd00:10:244:1::/64".parse().unwrap());
        lease.attrs.public_ipv6 = Some("2001:db8::2".parse().unwrap());
        (id, lease)
    };
    let d = plan(&PlanInput {
        cfg: &c,
        own: &own,
        underlay: &underlay(),
        local: &local(),
        peers: &[mk("198.51.100.2")],
        blackhole: false,
    })
    .unwrap();
    let DeviceSpec::Wireguard(w) = &d.devices[0] else {
        panic!()
    };
    assert_eq!(d.devices.len(), 1, "one device for both families");
    assert_eq!(w.addresses.len(), 2);
    assert_eq!(
        w.peers[0].endpoint.ip().to_string(),
        "198.51.100.2",
        "public IPv4 wins"
    );
    assert_eq!(w.peers[0].allowed_ips.len(), 2);
    let d = plan(&PlanInput {
        cfg: &c,
        own: &own,
        underlay: &underlay(),
        local: &local(),
        peers: &[mk("192.168.1.2")],
        blackhole: false,
    })
    .unwrap();
    let DeviceSpec::Wireguard(w) = &d.devices[0] else {
        panic!()
    };
    assert_eq!(
        w.peers[0].endpoint.ip().to_string(),
        "2001:db8::2",
        "private IPv4, global IPv6"
    );
}

#[test]
fn wireguard_peer_without_key_is_skipped() {
    let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}"#);
    let (id, lease) = routed_peer("10.244.1.0/24", "192.0.2.2", "wireguard");
    let d = run(&c, &[(id, lease)], &underlay()).unwrap();
    let DeviceSpec::Wireguard(w) = &d.devices[0] else {
        panic!()
    };
    assert!(w.peers.is_empty());
    assert_eq!(d.skipped.len(), 1);
}
