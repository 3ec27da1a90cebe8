//! Routes: list, replace, delete (one or many), and `ip route get`.
//!
//! Every route weft installs carries [`WEFT_ROUTE_PROTOCOL`](super::WEFT_ROUTE_PROTOCOL)
//! unless told otherwise, and deletion matches on the protocol too, so weft
//! can never remove a route it did not make.
//!
//! The types live here, the messages in `message` (pure, round-trip
//! tested), the socket in `io`.

mod io;
mod message;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::RouteType;

use super::{MAIN_TABLE, WEFT_ROUTE_PROTOCOL};

pub(crate) use message::address_family;

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
