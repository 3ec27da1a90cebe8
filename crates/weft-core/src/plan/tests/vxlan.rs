//! vxlan (flannel-compat §3.1).

use super::*;
use crate::test_leases::VXLAN_V4;

#[test]
fn vxlan_matches_the_golden_flannel_node() {
    // flannel-golden: node 1 (192.0.2.1, 10.244.6.0/24) and its peer node 2.
    let c = cfg(VXLAN_V4);
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
            tx_checksum_offload: true,
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
    let c = dual_cfg(r#"{"Type":"vxlan"}"#);
    let v6_data = VxlanData {
        vni: 1,
        vtep_mac: mac("2e:1d:8b:97:dc:f6"),
    };
    let peer = with_v6(
        vxlan_peer("10.244.1.0/24", "192.0.2.2", "2e:1d:8b:97:dc:f0"),
        Some(v6_data.encode()),
    );
    let d = run_dual(&c, &[peer]);
    assert_eq!(device_names(&d), ["flannel.1", "flannel-v6.1"]);
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
fn vxlan_without_a_tunnel_source_is_an_error() {
    let c = cfg(r#"{"Network":"10.244.0.0/16"}"#);
    let mut u = underlay();
    u.addr_v4 = None;
    assert!(matches!(
        run(&c, &[], &u),
        Err(PlanError::NoTunnelSource { .. })
    ));
}
