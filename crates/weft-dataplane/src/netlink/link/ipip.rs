//! ipip links: what weft asks for when it creates `flannel.ipip` and what
//! it reads back. Messages only; the socket is `io.rs`'s.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::link::{InfoData, InfoIpTunnel, LinkMessage};
use rtnetlink::LinkMessageBuilder;

/// An ipip device's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipInfo {
    pub local: Option<Ipv4Addr>,
    pub remote: Option<Ipv4Addr>,
}

/// The RTM_NEWLINK message that creates `flannel.ipip` with `local` as
/// source and any remote, as flannel's ipip backend does (§3.3).
pub(crate) fn create_message(name: &str, local: Ipv4Addr, mtu: u32) -> LinkMessage {
    LinkMessageBuilder::<rtnetlink::LinkIpIp>::new(name)
        .local(local)
        .mtu(mtu)
        .build()
}

/// The ipip parameters of a link as the kernel reports them.
pub(crate) fn ipip_of(data: Option<InfoData>) -> IpipInfo {
    let mut info = IpipInfo {
        local: None,
        remote: None,
    };
    if let Some(InfoData::IpTunnel(attrs)) = data {
        for attr in attrs {
            match attr {
                InfoIpTunnel::Local(IpAddr::V4(a)) if !a.is_unspecified() => info.local = Some(a),
                InfoIpTunnel::Remote(IpAddr::V4(a)) if !a.is_unspecified() => info.remote = Some(a),
                _ => {}
            }
        }
    }
    info
}
