//! Interface addresses: flannel gives each tunnel device a /32 (/128) equal
//! to the node's subnet network address, and removes any other address of
//! the cluster network from it (§3); the lab gives nodes and pods theirs.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::route::Scope;
use super::{Netlink, NetlinkError, conn};

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    /// The address with its prefix length (`10.244.1.0/32`).
    pub prefix: IpNet,
    /// `Link` for IPv6 link-local addresses, which weft leaves alone.
    pub scope: Scope,
    /// IFA_F_PERMANENT: configured, as opposed to autoconfigured (SLAAC).
    pub permanent: bool,
}

impl Netlink {
    /// The addresses on link `index`, both families.
    pub async fn addresses(&self, index: u32) -> Result<Vec<AddrInfo>, NetlinkError> {
        let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        let op = || format!("listing addresses of link {index}");
        let answers = conn::dump(&self.handle, request, op).await?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => addr_of(a),
                _ => None,
            })
            .collect())
    }

    /// Adds `addr` to link `index`, or refreshes it if it is already there
    /// (NLM_F_REPLACE), so calling it on every reconcile pass is harmless.
    pub async fn add_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::NewAddress(address_message(index, addr, true));
        let op = || format!("adding address {addr} to link {index}");
        conn::ack(&self.handle, request, NLM_F_CREATE | NLM_F_REPLACE, op).await
    }

    /// Removes `addr` from link `index`; `NotFound` if it was not there.
    pub async fn del_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::DelAddress(address_message(index, addr, false));
        let op = || format!("deleting address {addr} from link {index}");
        conn::ack(&self.handle, request, 0, op)
            .await
            .map_err(|e| e.errno_means_not_found(nix::libc::EADDRNOTAVAIL))
    }
}

/// The request for `addr`, shaped like iproute2's: IPv4 carries IFA_LOCAL
/// and IFA_ADDRESS, plus the broadcast address for prefixes shorter than /31
/// (as vishvananda/netlink, and so flannel and the CNI plugins, add it).
fn address_message(index: u32, addr: IpNet, with_broadcast: bool) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = addr.prefix_len();
    match addr {
        IpNet::V4(net) => {
            m.header.family = AddressFamily::Inet;
            let ip = IpAddr::V4(net.addr());
            m.attributes.push(AddressAttribute::Local(ip));
            m.attributes.push(AddressAttribute::Address(ip));
            if with_broadcast && net.prefix_len() < 31 {
                m.attributes
                    .push(AddressAttribute::Broadcast(net.broadcast()));
            }
        }
        IpNet::V6(net) => {
            m.header.family = AddressFamily::Inet6;
            m.attributes
                .push(AddressAttribute::Address(IpAddr::V6(net.addr())));
        }
    }
    m
}

fn addr_of(message: AddressMessage) -> Option<AddrInfo> {
    let mut address = None;
    let mut local = None;
    let mut permanent = message.header.flags.contains(AddressHeaderFlags::Permanent);
    for attr in message.attributes {
        match attr {
            AddressAttribute::Address(a) => address = Some(a),
            AddressAttribute::Local(a) => local = Some(a),
            AddressAttribute::Flags(f) => permanent = f.contains(AddressFlags::Permanent),
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    let ip = local.or(address)?;
    Some(AddrInfo {
        index: message.header.index,
        prefix: IpNet::new(ip, message.header.prefix_len).ok()?,
        scope: Scope::from(u8::from(message.header.scope)),
        permanent,
    })
}
