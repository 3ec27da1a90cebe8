//! vxlan links: what weft asks for when it creates `flannel.<VNI>` and
//! what it reads back to decide whether an existing one can be kept.
//! Messages only; the socket is `io.rs`'s.

use std::net::IpAddr;

use netlink_packet_route::link::{InfoVxlan, LinkMessage};
use rtnetlink::LinkVxlan;
use weft_core::mac::Mac;

/// A vxlan device's parameters, as compared by flannel to decide whether an
/// existing device is compatible (§3.1), plus learning and GBP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    /// UDP destination port (`dstport`); the kernel reports 8472 when none
    /// was given at creation.
    pub port: u16,
    /// Source address of the tunnel (`local`).
    pub local: Option<IpAddr>,
    /// The underlay device (`dev`).
    pub underlay_index: Option<u32>,
    pub learning: bool,
    pub gbp: bool,
}

/// What flannel's vxlan backend asks of `flannel.<VNI>` (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLinkSpec {
    pub name: String,
    pub vni: u32,
    /// `dstport`; 0 leaves the attribute out, so the kernel picks 8472, as
    /// flannel does with `Port: 0`. Choosing the default is the caller's job.
    pub port: u16,
    /// The node's address on the underlay (v4 for `flannel.N`, v6 for
    /// `flannel-v6.N`).
    pub local: IpAddr,
    pub underlay_index: Option<u32>,
    /// flannel's default is `nolearning`: peers are programmed, not learnt.
    pub learning: bool,
    pub gbp: bool,
    pub mtu: u32,
    /// The VTEP MAC published in the lease; `None` lets the kernel choose.
    pub mac: Option<Mac>,
}

/// The RTM_NEWLINK message that creates `spec` exactly as flannel does
/// (§3.1): left down, addresses first, then up, as flannel orders it.
pub(crate) fn create_message(spec: &VxlanLinkSpec) -> LinkMessage {
    let mut b = LinkVxlan::new(&spec.name, spec.vni)
        .learning(spec.learning)
        .mtu(spec.mtu);
    b = match spec.local {
        IpAddr::V4(a) => b.local(a),
        IpAddr::V6(a) => b.local6(a),
    };
    if let Some(dev) = spec.underlay_index {
        b = b.dev(dev);
    }
    if spec.port != 0 {
        b = b.port(spec.port);
    }
    if spec.gbp {
        b = b.append_info_data(InfoVxlan::Gbp);
    }
    if let Some(mac) = spec.mac {
        b = b.address(mac.octets().to_vec());
    }
    b.build()
}

/// The vxlan parameters of a link as the kernel reports them.
pub(crate) fn vxlan_of(attrs: Vec<InfoVxlan>) -> VxlanInfo {
    let mut v = VxlanInfo {
        vni: 0,
        port: 0,
        local: None,
        underlay_index: None,
        learning: false,
        gbp: false,
    };
    for attr in attrs {
        match attr {
            InfoVxlan::Id(id) => v.vni = id,
            InfoVxlan::Port(p) => v.port = p,
            InfoVxlan::Local(a) if !a.is_unspecified() => v.local = Some(IpAddr::V4(a)),
            InfoVxlan::Local6(a) if !a.is_unspecified() => v.local = Some(IpAddr::V6(a)),
            InfoVxlan::Link(i) if i != 0 => v.underlay_index = Some(i),
            InfoVxlan::Learning(l) => v.learning = l,
            InfoVxlan::Gbp => v.gbp = true,
            _ => {}
        }
    }
    v
}
