//! Routes: list, replace, delete (one or many), and `ip route get`.
//!
//! Every route weft installs carries [`WEFT_ROUTE_PROTOCOL`](super::WEFT_ROUTE_PROTOCOL)
//! unless told otherwise, and deletion matches on the protocol too, so weft
//! can never remove a route it did not make.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
    RouteScope as NlScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_core::Family;

use super::{MAIN_TABLE, Netlink, NetlinkError, WEFT_ROUTE_PROTOCOL, conn};

/// Scope of a route or an address (`rtm_scope`, `ifa_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `global`: reachable via a gateway or beyond.
    Universe,
    Site,
    /// Directly reachable on the link.
    Link,
    Host,
    /// In a delete request: match any scope.
    Nowhere,
    Other(u8),
}

impl From<u8> for Scope {
    fn from(v: u8) -> Scope {
        match v {
            0 => Scope::Universe,
            200 => Scope::Site,
            253 => Scope::Link,
            254 => Scope::Host,
            255 => Scope::Nowhere,
            n => Scope::Other(n),
        }
    }
}

impl From<Scope> for u8 {
    fn from(s: Scope) -> u8 {
        match s {
            Scope::Universe => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
            Scope::Other(n) => n,
        }
    }
}

/// The route's type (`rtm_type`). weft installs `Unicast` and `Blackhole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Unicast,
    /// Drop silently: flannel's `--ip-blackhole-route` for the own subnet
    /// (§6.3), so pod traffic to unassigned addresses never leaks out.
    Blackhole,
    Local,
    Broadcast,
    Unreachable,
    Prohibit,
    Other(u8),
}

impl From<RouteType> for RouteKind {
    fn from(t: RouteType) -> RouteKind {
        match t {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Local => RouteKind::Local,
            RouteType::Broadcast => RouteKind::Broadcast,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Prohibit => RouteKind::Prohibit,
            other => RouteKind::Other(u8::from(other)),
        }
    }
}

impl From<RouteKind> for RouteType {
    fn from(k: RouteKind) -> RouteType {
        match k {
            RouteKind::Unicast => RouteType::Unicast,
            RouteKind::Blackhole => RouteType::BlackHole,
            RouteKind::Local => RouteType::Local,
            RouteKind::Broadcast => RouteType::Broadcast,
            RouteKind::Unreachable => RouteType::Unreachable,
            RouteKind::Prohibit => RouteType::Prohibit,
            RouteKind::Other(n) => RouteType::from(n),
        }
    }
}

/// A route weft wants in the kernel. Build with [`RouteSpec::unicast`] or
/// [`RouteSpec::blackhole`] and the chained setters; the defaults are weft's
/// protocol, universe scope and the main table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    /// Destination; host bits are cleared before sending.
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// RTNH_F_ONLINK: the gateway is on the link even though no address of
    /// the device covers it. flannel's vxlan and ipip routes use it so the
    /// kernel never resolves the gateway (§3.1, §3.3).
    pub onlink: bool,
    pub protocol: u8,
    pub kind: RouteKind,
    pub scope: Scope,
    pub table: u32,
    /// The route metric (RTA_PRIORITY); `None` is the kernel default (0 for
    /// IPv4, 1024 for IPv6), which is what flannel uses.
    ///
    /// Why it exists: the kernel files IPv4 routes that differ only in their
    /// gateway into one hash bucket keyed by (protocol, scope, prefsrc,
    /// metric, device), so installing N flannel-shaped routes
    /// (`via <peer> dev flannel.1 onlink`) costs O(N²) in the kernel: 10 000
    /// take ~1.8 s of system time here, with iproute2 as with this layer.
    /// Spreading metrics over the peers (distinct per-prefix metrics do not
    /// change forwarding, there is one route per prefix) takes the same
    /// 10 000 to ~0.2 s, at the price of `metric N` in `ip route` output.
    pub metric: Option<u32>,
}

impl RouteSpec {
    /// A unicast route to `dst`, with weft's protocol in the main table.
    pub fn unicast(dst: IpNet) -> RouteSpec {
        RouteSpec {
            dst,
            gateway: None,
            oif: None,
            onlink: false,
            protocol: WEFT_ROUTE_PROTOCOL,
            kind: RouteKind::Unicast,
            scope: Scope::Universe,
            table: MAIN_TABLE,
            metric: None,
        }
    }

    /// A blackhole route to `dst` (§6.3).
    pub fn blackhole(dst: IpNet) -> RouteSpec {
        RouteSpec {
            kind: RouteKind::Blackhole,
            ..RouteSpec::unicast(dst)
        }
    }

    pub fn via(mut self, gateway: IpAddr) -> RouteSpec {
        self.gateway = Some(gateway);
        self
    }

    pub fn dev(mut self, oif: u32) -> RouteSpec {
        self.oif = Some(oif);
        self
    }

    pub fn onlink(mut self) -> RouteSpec {
        self.onlink = true;
        self
    }

    pub fn protocol(mut self, protocol: u8) -> RouteSpec {
        self.protocol = protocol;
        self
    }

    pub fn scope(mut self, scope: Scope) -> RouteSpec {
        self.scope = scope;
        self
    }

    pub fn table(mut self, table: u32) -> RouteSpec {
        self.table = table;
        self
    }

    pub fn metric(mut self, metric: u32) -> RouteSpec {
        self.metric = Some(metric);
        self
    }
}

/// Written like `ip route`: "10.244.2.0/24 via 10.244.2.0 dev 7 onlink proto 87".
impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unicast => {}
            RouteKind::Blackhole => write!(f, "blackhole ")?,
            RouteKind::Local => write!(f, "local ")?,
            RouteKind::Broadcast => write!(f, "broadcast ")?,
            RouteKind::Unreachable => write!(f, "unreachable ")?,
            RouteKind::Prohibit => write!(f, "prohibit ")?,
            RouteKind::Other(n) => write!(f, "type {n} ")?,
        }
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev {oif}")?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        if self.table != MAIN_TABLE {
            write!(f, " table {}", self.table)?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        write!(f, " proto {}", self.protocol)
    }
}

/// A route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub onlink: bool,
    pub protocol: u8,
    pub kind: RouteKind,
    pub scope: Scope,
    pub table: u32,
    /// Preferred source address (`src`), as `ip route get` shows it.
    pub prefsrc: Option<IpAddr>,
    /// The metric as reported (IPv6 routes always carry one).
    pub metric: Option<u32>,
}

impl From<&RouteInfo> for RouteSpec {
    /// The spec that deletes (or re-creates) a listed route. The kernel's
    /// default metric (0 for IPv4, 1024 for IPv6) becomes `None`, so a listed
    /// route compares equal to the spec that created it.
    fn from(r: &RouteInfo) -> RouteSpec {
        let default_metric = match r.dst {
            IpNet::V4(_) => 0,
            IpNet::V6(_) => IP6_RT_PRIO_USER,
        };
        RouteSpec {
            dst: r.dst,
            gateway: r.gateway,
            oif: r.oif,
            onlink: r.onlink,
            protocol: r.protocol,
            kind: r.kind,
            scope: r.scope,
            table: r.table,
            metric: r.metric.filter(|m| *m != default_metric),
        }
    }
}

/// The metric the kernel gives IPv6 routes added without one.
const IP6_RT_PRIO_USER: u32 = 1024;

impl Netlink {
    /// The routes of `family` in the main table.
    pub async fn routes(&self, family: Family) -> Result<Vec<RouteInfo>, NetlinkError> {
        self.routes_in_table(family, MAIN_TABLE).await
    }

    /// The routes of `family` in `table`.
    pub async fn routes_in_table(
        &self,
        family: Family,
        table: u32,
    ) -> Result<Vec<RouteInfo>, NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = address_family(family);
        let op = || format!("listing {family} routes");
        let answers = conn::dump(&self.handle, RouteNetlinkMessage::GetRoute(message), op).await?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_of(r),
                _ => None,
            })
            .filter(|r| r.table == table)
            .collect())
    }

    /// Installs `route`, replacing any route to the same destination (same
    /// table, type-independent key: dst, tos, priority), so repeating it is
    /// harmless.
    pub async fn replace_route(&self, route: &RouteSpec) -> Result<(), NetlinkError> {
        let message = route_message(route, false)?;
        let op = || format!("replacing route {route}");
        conn::ack(&self.handle, message, NLM_F_CREATE | NLM_F_REPLACE, op).await
    }

    /// Deletes `route`, matching its protocol, gateway and device; any
    /// scope. `NotFound` if no such route exists.
    pub async fn delete_route(&self, route: &RouteSpec) -> Result<(), NetlinkError> {
        let message = route_message(route, true)?;
        let op = || format!("deleting route {route}");
        conn::ack(&self.handle, message, 0, op).await
    }

    /// [`Netlink::replace_route`] for many routes, sent in batches on the one
    /// connection; one result per route, in order. See
    /// [`RouteSpec::metric`] for what limits its speed at 10 000 routes.
    pub async fn replace_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        self.route_batch(routes, false).await
    }

    /// [`Netlink::delete_route`] for many routes; one result per route.
    pub async fn delete_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        self.route_batch(routes, true).await
    }

    async fn route_batch(
        &self,
        routes: &[RouteSpec],
        delete: bool,
    ) -> Vec<Result<(), NetlinkError>> {
        let verb = if delete { "deleting" } else { "replacing" };
        let flags = if delete {
            0
        } else {
            NLM_F_CREATE | NLM_F_REPLACE
        };
        let mut results: Vec<Option<Result<(), NetlinkError>>> = Vec::with_capacity(routes.len());
        let mut messages = Vec::with_capacity(routes.len());
        let mut sent = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            match route_message(route, delete) {
                Ok(m) => {
                    messages.push(m);
                    sent.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let op = |k: usize| format!("{verb} route {}", routes[sent[k]]);
        let answers = conn::ack_batch(&self.handle, messages, flags, &op).await;
        for (k, answer) in answers.into_iter().enumerate() {
            results[sent[k]] = Some(answer);
        }
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(NetlinkError::ConnectionClosed {
                        op: op_for(verb, &routes[i]),
                    })
                })
            })
            .collect()
    }

    /// The route the kernel would use to reach `dst`, like `ip route get`;
    /// `None` when `dst` is unreachable. flannel's DirectRouting and host-gw
    /// decide from it whether a peer is on-link: one route, no gateway.
    pub async fn route_get(&self, dst: IpAddr) -> Result<Option<RouteInfo>, NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = address_family(Family::of(dst));
        message.header.destination_prefix_length = Family::of(dst).bits();
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let op = || format!("looking up the route to {dst}");
        match conn::get(&self.handle, RouteNetlinkMessage::GetRoute(message), 0, op).await {
            Ok(RouteNetlinkMessage::NewRoute(r)) => Ok(route_of(r)),
            Ok(other) => Err(NetlinkError::Protocol {
                op: format!("looking up the route to {dst}"),
                detail: format!("expected a route, got {other:?}"),
            }),
            Err(NetlinkError::Kernel { errno, .. })
                if errno == nix::libc::ENETUNREACH || errno == nix::libc::EHOSTUNREACH =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn op_for(verb: &str, route: &RouteSpec) -> String {
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
fn route_message(route: &RouteSpec, delete: bool) -> Result<RouteNetlinkMessage, NetlinkError> {
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
fn route_of(message: RouteMessage) -> Option<RouteInfo> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let r = RouteSpec::unicast("10.244.2.0/24".parse().unwrap())
            .via("2001:db8::1".parse().unwrap());
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
}
