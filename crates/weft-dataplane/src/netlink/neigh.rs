//! Neighbours (ARP for IPv4, NDP for IPv6): the vxlan backend pins each
//! peer's subnet address to the peer's VTEP MAC with a permanent entry, so
//! the kernel never has to resolve it (§3.1 step 1).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourHeader, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_core::Family;
use weft_core::mac::Mac;

use super::route::address_family;
use super::{Netlink, NetlinkError, conn};

/// A neighbour entry on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighInfo {
    pub index: u32,
    pub ip: IpAddr,
    /// `None` while unresolved (INCOMPLETE, FAILED).
    pub mac: Option<Mac>,
    pub state: NeighState,
}

/// Neighbour state (`ndm_state`), the NUD_* values weft distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    /// Set by an administrator (weft): never expires, never re-resolved.
    Permanent,
    Reachable,
    Stale,
    Incomplete,
    Failed,
    Noarp,
    Other(u16),
}

impl NeighState {
    fn of(state: NeighbourState) -> NeighState {
        match state {
            NeighbourState::Permanent => NeighState::Permanent,
            NeighbourState::Reachable => NeighState::Reachable,
            NeighbourState::Stale => NeighState::Stale,
            NeighbourState::Incomplete => NeighState::Incomplete,
            NeighbourState::Failed => NeighState::Failed,
            NeighbourState::Noarp => NeighState::Noarp,
            other => NeighState::Other(u16::from(other)),
        }
    }
}

impl Netlink {
    /// The IPv4 and IPv6 neighbour entries on link `index`.
    pub async fn neighbours(&self, index: u32) -> Result<Vec<NeighInfo>, NetlinkError> {
        let request = RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default());
        let op = || format!("listing neighbours of link {index}");
        let answers = conn::dump(&self.handle, request, op).await?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => neigh_of(n),
                _ => None,
            })
            .collect())
    }

    /// Pins `ip` to `mac` on link `index` (NUD_PERMANENT, create or replace),
    /// like `ip neigh replace <ip> dev <link> lladdr <mac> nud permanent`.
    pub async fn replace_neighbour(
        &self,
        index: u32,
        ip: IpAddr,
        mac: Mac,
    ) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::NewNeighbour(neighbour_message(index, ip, Some(mac)));
        let op = || format!("replacing neighbour {ip} lladdr {mac} on link {index}");
        conn::ack(&self.handle, request, NLM_F_CREATE | NLM_F_REPLACE, op).await
    }

    /// Removes the entry for `ip` on link `index`; `NotFound` if absent.
    pub async fn delete_neighbour(&self, index: u32, ip: IpAddr) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::DelNeighbour(neighbour_message(index, ip, None));
        let op = || format!("deleting neighbour {ip} on link {index}");
        conn::ack(&self.handle, request, 0, op).await
    }

    /// [`Netlink::replace_neighbour`] for many `(ip, mac)` on one link, sent
    /// in batches; one result per entry, in order.
    pub async fn replace_neighbours(
        &self,
        index: u32,
        entries: &[(IpAddr, Mac)],
    ) -> Vec<Result<(), NetlinkError>> {
        let messages = entries
            .iter()
            .map(|(ip, mac)| {
                RouteNetlinkMessage::NewNeighbour(neighbour_message(index, *ip, Some(*mac)))
            })
            .collect();
        let op = |i: usize| {
            let (ip, mac) = entries[i];
            format!("replacing neighbour {ip} lladdr {mac} on link {index}")
        };
        conn::ack_batch(&self.handle, messages, NLM_F_CREATE | NLM_F_REPLACE, &op).await
    }

    /// [`Netlink::delete_neighbour`] for many addresses on one link.
    pub async fn delete_neighbours(
        &self,
        index: u32,
        ips: &[IpAddr],
    ) -> Vec<Result<(), NetlinkError>> {
        let messages = ips
            .iter()
            .map(|ip| RouteNetlinkMessage::DelNeighbour(neighbour_message(index, *ip, None)))
            .collect();
        let op = |i: usize| format!("deleting neighbour {} on link {index}", ips[i]);
        conn::ack_batch(&self.handle, messages, 0, &op).await
    }
}

fn neighbour_message(index: u32, ip: IpAddr, mac: Option<Mac>) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header = NeighbourHeader {
        family: address_family(Family::of(ip)),
        ifindex: index,
        state: NeighbourState::Permanent,
        kind: RouteType::Unicast,
        ..NeighbourHeader::default()
    };
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    if let Some(mac) = mac {
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    }
    m
}

fn neigh_of(message: NeighbourMessage) -> Option<NeighInfo> {
    if !matches!(
        message.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    for attr in message.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(IpAddr::V6(a)),
            NeighbourAttribute::LinkLayerAddress(l) => {
                mac = <[u8; 6]>::try_from(l.as_slice()).ok().map(Mac)
            }
            _ => {}
        }
    }
    Some(NeighInfo {
        index: message.header.ifindex,
        ip: ip?,
        mac,
        state: NeighState::of(message.header.state),
    })
}
