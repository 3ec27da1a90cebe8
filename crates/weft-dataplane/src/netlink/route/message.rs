//! Route messages, built and read without I/O: the request for a
//! [`RouteSpec`] and the [`RouteInfo`] of a kernel answer.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
    RouteScope as NlScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_core::Family;

use super::super::NetlinkError;
use super::{RouteInfo, RouteKind, RouteSpec, Scope};

pub(super) fn op_for(verb: &str, route: &RouteSpec) -> String {
    format!("{verb} route {route}")
}

pub(crate) fn address_family(family: Family) -> AddressFamily {
    match family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    }
}

/// The request for `route`. Deletion asks for any scope (RT_SCOPE_NOWHERE),
/// as `ip route del` does, but keeps the protocol so that only weft's
/// routes can match.
pub(super) fn route_message(
    route: &RouteSpec,
    delete: bool,
) -> Result<RouteNetlinkMessage, NetlinkError> {
    let family = Family::of_net(route.dst);
    if let Some(gw) = route.gateway.filter(|gw| Family::of(*gw) != family) {
        return Err(NetlinkError::InvalidInput {
            op: format!("building route {route}"),
            reason: format!("gateway {gw} is not of the destination's family"),
        });
    }
    let dst = route.dst.trunc();
    let mut header = RouteHeader {
        address_family: address_family(family),
        destination_prefix_length: dst.prefix_len(),
        protocol: RouteProtocol::from(route.protocol),
        scope: NlScope::from(u8::from(if delete { Scope::Nowhere } else { route.scope })),
        kind: RouteType::from(route.kind),
        ..RouteHeader::default()
    };
    if route.onlink {
        header.flags |= RouteFlags::Onlink;
    }
    let mut attributes = Vec::with_capacity(4);
    if dst.prefix_len() > 0 {
        attributes.push(RouteAttribute::Destination(RouteAddress::from(dst.addr())));
    }
    if let Some(gw) = route.gateway {
        attributes.push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = route.oif {
        attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        attributes.push(RouteAttribute::Priority(metric));
    }
    // Tables above 255 do not fit the header's byte (iproute2 does the same).
    match u8::try_from(route.table) {
        Ok(t) => header.table = t,
        Err(_) => attributes.push(RouteAttribute::Table(route.table)),
    }
    let mut message = RouteMessage::default();
    message.header = header;
    message.attributes = attributes;
    Ok(if delete {
        RouteNetlinkMessage::DelRoute(message)
    } else {
        RouteNetlinkMessage::NewRoute(message)
    })
}

fn ip_of(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

/// Translates a kernel route; `None` for families weft does not handle.
pub(crate) fn route_of(message: RouteMessage) -> Option<RouteInfo> {
    let h = &message.header;
    let family = match h.address_family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let mut dst = None;
    let mut info = RouteInfo {
        dst: IpNet::new(unspecified(family), 0).ok()?,
        gateway: None,
        oif: None,
        onlink: h.flags.contains(RouteFlags::Onlink),
        protocol: u8::from(h.protocol),
        kind: RouteKind::from(h.kind),
        scope: Scope::from(u8::from(h.scope)),
        table: u32::from(h.table),
        prefsrc: None,
        metric: None,
    };
    let dst_len = h.destination_prefix_length;
    for attr in message.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => info.gateway = ip_of(a),
            RouteAttribute::Oif(i) => info.oif = Some(i),
            RouteAttribute::Table(t) => info.table = t,
            RouteAttribute::PrefSource(a) => info.prefsrc = ip_of(a),
            RouteAttribute::Priority(p) => info.metric = Some(p),
            _ => {}
        }
    }
    info.dst = IpNet::new(dst.unwrap_or_else(|| unspecified(family)), dst_len).ok()?;
    Some(info)
}

fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}
