//! Links: list, create (vxlan, ipip, wireguard, and bridge/veth for the lab),
//! change and delete.
//!
//! [`LinkInfo`] carries what the reconciler needs to decide whether an
//! existing `flannel.1` can be kept (same VNI, port, local address, underlay)
//! or must be recreated, and whether its MTU or MAC must be changed.
//!
//! As in netlink-packet-route: the messages of each link kind weft creates
//! and reads back live in a module of their own (`vxlan`, `ipip`), pure and
//! round-trip tested; this module reads a kernel link message; `io` is the
//! only one that talks to the socket.

mod io;
mod ipip;
#[cfg(test)]
mod tests;
mod vxlan;

use netlink_packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, State,
};
use weft_core::mac::Mac;

pub use ipip::IpipInfo;
pub use vxlan::{VxlanInfo, VxlanLinkSpec};

/// A network device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    /// `None` for devices without a link-layer address (ipip, wireguard).
    pub mac: Option<Mac>,
    /// IFF_UP: the administrator (weft) set it up.
    pub admin_up: bool,
    /// IFF_LOWER_UP: the device has carrier.
    pub lower_up: bool,
    /// RFC 2863 operational state. A vxlan device that is up reports
    /// `Unknown`, not `Up` (it has no carrier of its own).
    pub oper_state: OperState,
    /// The bridge (or other controller) this device is a port of.
    pub controller: Option<u32>,
}

impl LinkInfo {
    /// The vxlan parameters, if this is a vxlan device.
    pub fn vxlan(&self) -> Option<&VxlanInfo> {
        match &self.kind {
            LinkKind::Vxlan(v) => Some(v),
            _ => None,
        }
    }

    /// The ipip parameters, if this is an ipip device.
    pub fn ipip(&self) -> Option<&IpipInfo> {
        match &self.kind {
            LinkKind::Ipip(i) => Some(i),
            _ => None,
        }
    }
}

/// What sort of device a link is (`IFLA_INFO_KIND`), with the parameters
/// weft compares for the kinds it creates itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Vxlan(VxlanInfo),
    Ipip(IpipInfo),
    Wireguard,
    Bridge,
    Veth,
    Tun,
    /// Any other kind, by its kernel name ("macvlan", "dummy", ...).
    Other(String),
    /// No kind reported: a physical NIC or the loopback device.
    Device,
}

impl LinkKind {
    /// The kernel's name for the kind, as `ip -d link` prints it.
    pub fn name(&self) -> &str {
        match self {
            LinkKind::Vxlan(_) => "vxlan",
            LinkKind::Ipip(_) => "ipip",
            LinkKind::Wireguard => "wireguard",
            LinkKind::Bridge => "bridge",
            LinkKind::Veth => "veth",
            LinkKind::Tun => "tun",
            LinkKind::Other(name) => name,
            LinkKind::Device => "device",
        }
    }
}

/// Operational state (`IFLA_OPERSTATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    Up,
    Down,
    LowerLayerDown,
    Unknown,
    Other(u8),
}

/// Translates a kernel link message; `None` if it has no name (never seen in
/// practice, but a nameless link is of no use to weft).
pub(crate) fn link_of(message: LinkMessage) -> Option<LinkInfo> {
    let flags = message.header.flags;
    let mut name = None;
    let mut mtu = 0;
    let mut mac = None;
    let mut oper_state = OperState::Unknown;
    let mut controller = None;
    let mut kind = LinkKind::Device;
    for attr in message.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n),
            LinkAttribute::Mtu(m) => mtu = m,
            LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok().map(Mac),
            LinkAttribute::OperState(s) => oper_state = oper_state_of(s),
            LinkAttribute::Controller(c) if c != 0 => controller = Some(c),
            LinkAttribute::LinkInfo(infos) => kind = kind_of(infos),
            _ => {}
        }
    }
    Some(LinkInfo {
        index: message.header.index,
        name: name?,
        kind,
        mtu,
        mac,
        admin_up: flags.contains(LinkFlags::Up),
        lower_up: flags.contains(LinkFlags::LowerUp),
        oper_state,
        controller,
    })
}

fn oper_state_of(state: State) -> OperState {
    match state {
        State::Up => OperState::Up,
        State::Down => OperState::Down,
        State::LowerLayerDown => OperState::LowerLayerDown,
        State::Unknown => OperState::Unknown,
        State::NotPresent => OperState::Other(1),
        State::Testing => OperState::Other(4),
        State::Dormant => OperState::Other(5),
        State::Other(n) => OperState::Other(n),
        _ => OperState::Other(u8::MAX),
    }
}

fn kind_of(infos: Vec<NlLinkInfo>) -> LinkKind {
    let mut info_kind = None;
    let mut data = None;
    for info in infos {
        match info {
            NlLinkInfo::Kind(k) => info_kind = Some(k),
            NlLinkInfo::Data(d) => data = Some(d),
            _ => {}
        }
    }
    match (info_kind, data) {
        (Some(InfoKind::Vxlan), Some(InfoData::Vxlan(attrs))) => {
            LinkKind::Vxlan(vxlan::vxlan_of(attrs))
        }
        (Some(InfoKind::Vxlan), _) => LinkKind::Vxlan(vxlan::vxlan_of(Vec::new())),
        (Some(InfoKind::IpIp), data) => LinkKind::Ipip(ipip::ipip_of(data)),
        (Some(InfoKind::Wireguard), _) => LinkKind::Wireguard,
        (Some(InfoKind::Bridge), _) => LinkKind::Bridge,
        (Some(InfoKind::Veth), _) => LinkKind::Veth,
        (Some(InfoKind::Tun), _) => LinkKind::Tun,
        (Some(other), _) => LinkKind::Other(other.to_string()),
        (None, _) => LinkKind::Device,
    }
}
