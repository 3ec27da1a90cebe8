//! Route messages: printing, refusal before the kernel, and round trips
//! through the wire encoding (what weft sends reads back as what it asked
//! for, so the reconciler's "is this route right?" compares like with like).

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::RouteMessage;

use super::message::{route_message, route_of};
use super::*;
use crate::netlink::NetlinkError;

#[test]
fn spec_prints_like_ip_route() {
    let r = RouteSpec::unicast("10.244.2.0/24".parse().unwrap())
        .via("10.244.2.0".parse().unwrap())
        .dev(7)
        .onlink();
    assert_eq!(
        r.to_string(),
        "10.244.2.0/24 via 10.244.2.0 dev 7 onlink proto 87"
    );
    let b = RouteSpec::blackhole("10.244.1.0/24".parse().unwrap());
    assert_eq!(b.to_string(), "blackhole 10.244.1.0/24 proto 87");
}

#[test]
fn mixed_family_gateway_is_refused_before_the_kernel() {
    let r =
        RouteSpec::unicast("10.244.2.0/24".parse().unwrap()).via("2001:db8::1".parse().unwrap());
    assert!(matches!(
        route_message(&r, false),
        Err(NetlinkError::InvalidInput { .. })
    ));
}

#[test]
fn scope_round_trips() {
    for s in [
        Scope::Universe,
        Scope::Site,
        Scope::Link,
        Scope::Host,
        Scope::Nowhere,
        Scope::Other(7),
    ] {
        assert_eq!(Scope::from(u8::from(s)), s);
    }
}

fn through_the_wire(spec: &RouteSpec) -> RouteInfo {
    let Ok(RouteNetlinkMessage::NewRoute(message)) = route_message(spec, false) else {
        panic!("no message for {spec}");
    };
    let mut bytes = vec![0u8; message.buffer_len()];
    message.emit(&mut bytes);
    let parsed = RouteMessage::parse(bytes.as_slice())
        .unwrap_or_else(|e| panic!("our own message does not parse: {e}"));
    route_of(parsed).unwrap_or_else(|| panic!("{spec} did not read back"))
}

#[test]
fn every_route_shape_reads_back_as_asked() {
    let net = |s: &str| s.parse::<IpNet>().unwrap_or_else(|_| unreachable!());
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
    for spec in [
        // vxlan and ipip: via the peer, onlink, out of weft's device.
        RouteSpec::unicast(net("10.244.2.0/24"))
            .via(ip("10.244.2.0"))
            .dev(7)
            .onlink(),
        // host-gw: via the peer's address on the underlay.
        RouteSpec::unicast(net("10.244.3.0/24"))
            .via(ip("192.0.2.3"))
            .dev(2),
        // wireguard: the whole network out of the device, scope link.
        RouteSpec::unicast(net("10.244.0.0/16"))
            .dev(9)
            .scope(Scope::Link),
        RouteSpec::blackhole(net("10.244.1.0/24")),
        RouteSpec::unicast(net("fd00:10:244:2::/64"))
            .via(ip("fd00:10:244:2::"))
            .dev(7)
            .onlink(),
        RouteSpec::unicast(net("10.244.4.0/24"))
            .via(ip("192.0.2.4"))
            .dev(2)
            .metric(17)
            .table(1000),
    ] {
        let back = through_the_wire(&spec);
        assert_eq!(RouteSpec::from(&back), spec, "{spec}");
    }
}
