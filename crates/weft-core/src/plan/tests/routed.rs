//! host-gw, ipip and none: the backends without a vxlan device.

use super::*;

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
    let d = plan_on(&c, &own(), &[], &underlay(), true).unwrap();
    assert_eq!(
        d.routes,
        vec![RoutePlan {
            dst: "10.244.6.0/24".parse().unwrap(),
            target: RouteTarget::Blackhole,
        }]
    );
}
