//! The forwarding database of a vxlan device (AF_BRIDGE neighbours with
//! NTF_SELF): which underlay address to send a VTEP MAC's frames to
//! (§3.1 step 2, `bridge fdb replace <mac> dev flannel.1 self dst <ip> permanent`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourHeader, NeighbourMessage,
    NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_core::mac::Mac;

use super::{Netlink, NetlinkError, conn};

/// An FDB entry on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbInfo {
    pub index: u32,
    pub mac: Mac,
    /// The remote VTEP (NDA_DST); `None` for entries of bridge ports.
    pub dst: Option<IpAddr>,
    /// NTF_SELF: the entry lives in the device's own table (vxlan), not in a
    /// bridge it is a port of.
    pub is_self: bool,
    pub permanent: bool,
}

impl Netlink {
    /// The FDB entries of link `index`.
    pub async fn fdb(&self, index: u32) -> Result<Vec<FdbInfo>, NetlinkError> {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        let op = || format!("listing fdb entries of link {index}");
        let answers =
            conn::dump(&self.handle, RouteNetlinkMessage::GetNeighbour(message), op).await?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => fdb_of(n),
                _ => None,
            })
            .collect())
    }

    /// Points `mac` at the VTEP `dst` on vxlan link `index` (self,
    /// permanent; create or replace).
    pub async fn replace_fdb(&self, index: u32, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::NewNeighbour(fdb_message(index, mac, dst));
        let op = || format!("replacing fdb entry {mac} dst {dst} on link {index}");
        conn::ack(&self.handle, request, NLM_F_CREATE | NLM_F_REPLACE, op).await
    }

    /// Removes the entry `mac` -> `dst`; `NotFound` if absent.
    pub async fn delete_fdb(&self, index: u32, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::DelNeighbour(fdb_message(index, mac, dst));
        let op = || format!("deleting fdb entry {mac} dst {dst} on link {index}");
        conn::ack(&self.handle, request, 0, op).await
    }

    /// [`Netlink::replace_fdb`] for many `(mac, dst)` on one link, sent in
    /// batches; one result per entry, in order.
    pub async fn replace_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> Vec<Result<(), NetlinkError>> {
        let replace = RouteNetlinkMessage::NewNeighbour;
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.fdb_batch(index, entries, replace, flags, "replacing")
            .await
    }

    /// [`Netlink::delete_fdb`] for many entries on one link.
    pub async fn delete_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> Vec<Result<(), NetlinkError>> {
        let delete = RouteNetlinkMessage::DelNeighbour;
        self.fdb_batch(index, entries, delete, 0, "deleting").await
    }

    /// One `kind` message per entry, sent in batches; errors say `doing`.
    async fn fdb_batch(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
        kind: fn(NeighbourMessage) -> RouteNetlinkMessage,
        flags: u16,
        doing: &str,
    ) -> Vec<Result<(), NetlinkError>> {
        let messages = entries
            .iter()
            .map(|(mac, dst)| kind(fdb_message(index, *mac, *dst)))
            .collect();
        let op = |i: usize| {
            let (mac, dst) = entries[i];
            format!("{doing} fdb entry {mac} dst {dst} on link {index}")
        };
        conn::ack_batch(&self.handle, messages, flags, &op).await
    }
}

fn fdb_message(index: u32, mac: Mac, dst: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header = NeighbourHeader {
        family: AddressFamily::Bridge,
        ifindex: index,
        state: NeighbourState::Permanent,
        flags: NeighbourFlags::Own,
        kind: RouteType::Unspec,
    };
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
    m
}

fn fdb_of(message: NeighbourMessage) -> Option<FdbInfo> {
    if message.header.family != AddressFamily::Bridge {
        return None;
    }
    let mut mac = None;
    let mut dst = None;
    for attr in message.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(l) => {
                mac = <[u8; 6]>::try_from(l.as_slice()).ok().map(Mac)
            }
            NeighbourAttribute::Destination(a) => dst = ip_of(a),
            _ => {}
        }
    }
    Some(FdbInfo {
        index: message.header.ifindex,
        mac: mac?,
        dst,
        is_self: message.header.flags.contains(NeighbourFlags::Own),
        permanent: message.header.state == NeighbourState::Permanent,
    })
}

/// NDA_DST of an AF_BRIDGE entry comes unparsed: its length says the family.
fn ip_of(a: NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice())
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        },
        _ => None,
    }
}
