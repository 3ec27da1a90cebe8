//! The netlink layer: the one place weft reads and changes kernel network
//! state (links, addresses, routes, neighbours, bridge FDB, link events, and
//! ethtool features).
//!
//! Why a layer of its own: rtnetlink and netlink-packet-route break their API
//! with every minor release, so every call into them lives behind this narrow
//! seam that speaks weft's types (`IpNet`, `Mac`, plain structs). The
//! reconciler reads state with the list methods, diffs, and applies changes
//! with the replace/delete methods; nothing here decides anything.
//!
//! Every request is idempotent where the kernel allows it (replace, not add),
//! every error names the operation and sorts the errno into the cases a
//! caller acts on ([`NetlinkError`]), and the batch methods put many requests
//! into one datagram: neighbour and FDB entries for ten thousand peers take
//! well under a tenth of a second. Routes are bound by the kernel, not by
//! this layer (see [`RouteSpec::metric`]).
//!
//! A [`Netlink`] is bound to the network namespace of the thread that called
//! [`Netlink::connect`], for its whole life.

mod addr;
mod conn;
mod error;
mod ethtool;
mod events;
mod fdb;
mod link;
mod neigh;
mod route;
pub mod xfrm;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_proto::ConnectionHandle;
use netlink_sys::protocols::NETLINK_ROUTE;

pub use addr::AddrInfo;
pub use error::NetlinkError;
pub use ethtool::TX_CHECKSUM_FEATURE;
pub use events::{LinkEvent, LinkEvents};
pub use fdb::FdbInfo;
pub use link::{IpipInfo, LinkInfo, LinkKind, OperState, VxlanInfo, VxlanLinkSpec};
pub use neigh::{NeighInfo, NeighState};
pub use route::{RouteInfo, RouteKind, RouteSpec, Scope};
pub use weft_core::Family;

/// The route protocol number (`rtm_protocol`) on every route weft programs.
///
/// Why: weft must tell its own routes from everyone else's, so that on
/// restart it adopts them (no flush, no gap in traffic) and deletes only the
/// stale ones it made, never a route an operator or another daemon added.
/// flannel leaves `boot` (3) on its routes, which half the system also uses.
///
/// Why 87: it is ASCII `W` (for weft), and it is unassigned in the kernel's
/// `include/uapi/linux/rtnetlink.h` (which names 0–4, 8–18, 42, 99, 186–192)
/// and in iproute2's `/etc/iproute2/rt_protos` here. Values at or above
/// `RTPROT_STATIC` (4) are not interpreted by the kernel, only carried. Known
/// numbers seen in the wild avoided: 80 (Calico), FRR's `rt_protos.d`
/// (186–198). Install `87 weft` into `/etc/iproute2/rt_protos.d/weft.conf` to
/// make `ip route show proto weft` work; `proto 87` works everywhere.
pub const WEFT_ROUTE_PROTOCOL: u8 = 87;

/// The main routing table (`RT_TABLE_MAIN`), where weft's routes live.
pub const MAIN_TABLE: u32 = 254;

/// A connection to the kernel's routing netlink (and the ethtool generic
/// netlink family), bound to one network namespace.
///
/// Cheap to clone: clones share the connection, whose driver task runs on the
/// tokio runtime that was current at [`Netlink::connect`].
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: ConnectionHandle<RouteNetlinkMessage>,
    ethtool: ethtool::EthtoolClient,
    /// Identifies the namespace the sockets were opened in.
    netns_inode: Option<u64>,
}

impl Netlink {
    /// Opens a netlink connection in the calling thread's current network
    /// namespace and spawns its driver on the current tokio runtime.
    ///
    /// Why the thread matters: a netlink socket belongs to the namespace of
    /// the thread that created it, whatever thread later uses it. Tests and
    /// the lab `unshare`/`setns` a dedicated thread, then build a
    /// current-thread runtime and call this on it.
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let handle = conn::open(NETLINK_ROUTE, &runtime)?;
        let ethtool = ethtool::EthtoolClient::open(&runtime)?;
        Ok(Netlink {
            handle,
            ethtool,
            netns_inode: events::current_netns_inode(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The reconciler spawns these on a multi-thread runtime: they must be
    /// `Send`. Type-checked, never run.
    #[allow(dead_code)]
    fn futures_are_send(nl: &Netlink, routes: &[RouteSpec], spec: &VxlanLinkSpec) {
        assert_send(&nl.replace_routes(routes));
        assert_send(&nl.replace_route(&routes[0]));
        assert_send(&nl.create_vxlan(spec));
        assert_send(&nl.links());
        assert_send(&nl.replace_fdbs(1, &[]));
        assert_send(&nl.replace_neighbours(1, &[]));
        assert_send(&nl.set_tx_checksum("flannel.1", false));
        assert_send(&nl.route_get(std::net::IpAddr::from([192, 0, 2, 1])));
        assert_send(nl);
    }
}
