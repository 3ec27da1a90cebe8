//! Links: list, create (vxlan, ipip, wireguard, and bridge/veth for the lab),
//! change and delete.
//!
//! [`LinkInfo`] carries what the reconciler needs to decide whether an
//! existing `flannel.1` can be kept (same VNI, port, local address, underlay)
//! or must be recreated, and whether its MTU or MAC must be changed.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoIpTunnel, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkMessage, State,
};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, LinkWireguard};
use weft_core::mac::Mac;

use super::{Netlink, NetlinkError, conn};

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

/// An ipip device's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipInfo {
    pub local: Option<Ipv4Addr>,
    pub remote: Option<Ipv4Addr>,
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

impl Netlink {
    /// Every link in the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let answers = conn::dump(&self.handle, request, || "listing links".to_string()).await?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => link_of(l),
                _ => None,
            })
            .collect())
    }

    /// The link called `name`, or `None`.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let message = LinkUnspec::new_with_name(name).build();
        self.get_link(message, || format!("looking up link {name}"))
            .await
    }

    /// The link with index `index`, or `None`.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let message = LinkUnspec::new_with_index(index).build();
        self.get_link(message, || format!("looking up link {index}"))
            .await
    }

    async fn get_link(
        &self,
        message: LinkMessage,
        op: impl Fn() -> String,
    ) -> Result<Option<LinkInfo>, NetlinkError> {
        match conn::get(&self.handle, RouteNetlinkMessage::GetLink(message), 0, &op).await {
            Ok(RouteNetlinkMessage::NewLink(m)) => Ok(link_of(m)),
            Ok(other) => Err(NetlinkError::Protocol {
                op: op(),
                detail: format!("expected a link, got {other:?}"),
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a vxlan device exactly as flannel does (§3.1) and returns its
    /// index. The device is left down: addresses first, then
    /// [`Netlink::set_link_up`], as flannel orders it.
    pub async fn create_vxlan(&self, spec: &VxlanLinkSpec) -> Result<u32, NetlinkError> {
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
        let op = || {
            format!(
                "creating vxlan link {} (vni {}, local {}, dstport {})",
                spec.name, spec.vni, spec.local, spec.port
            )
        };
        self.create_link(b.build(), &spec.name, "vxlan", op).await
    }

    /// Creates an ipip device with `local` as source and any remote, as
    /// flannel's ipip backend does (§3.3), and returns its index.
    pub async fn create_ipip(
        &self,
        name: &str,
        local: Ipv4Addr,
        mtu: u32,
    ) -> Result<u32, NetlinkError> {
        let b = LinkMessageBuilder::<rtnetlink::LinkIpIp>::new(name)
            .local(local)
            .mtu(mtu);
        let op = || format!("creating ipip link {name} (local {local}, mtu {mtu})");
        self.create_link(b.build(), name, "ipip", op).await
    }

    /// Creates a kernel WireGuard device and returns its index.
    /// `NotSupported` when the kernel has no WireGuard, the cue to fall back
    /// to the userspace implementation.
    pub async fn create_wireguard(
        &self,
        name: &str,
        mtu: Option<u32>,
    ) -> Result<u32, NetlinkError> {
        let mut b = LinkWireguard::new(name);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        let op = || format!("creating wireguard link {name}");
        self.create_link(b.build(), name, "wireguard", op).await
    }

    /// Creates a bridge (the lab's underlay switch, a node's `cni0`).
    pub async fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<u32, NetlinkError> {
        let mut b = LinkBridge::new(name);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        let op = || format!("creating bridge {name}");
        self.create_link(b.build(), name, "bridge", op).await
    }

    /// Creates a veth pair `name` <-> `peer` (the lab's cables).
    pub async fn create_veth(&self, name: &str, peer: &str) -> Result<(), NetlinkError> {
        let message = LinkVeth::new(name, peer).build();
        let op = || format!("creating veth pair {name} <-> {peer}");
        self.create_link(message, name, "veth", op)
            .await
            .map(|_| ())
    }

    async fn create_link(
        &self,
        message: LinkMessage,
        name: &str,
        kind: &str,
        op: impl Fn() -> String + Sync,
    ) -> Result<u32, NetlinkError> {
        let request = RouteNetlinkMessage::NewLink(message);
        conn::ack(&self.handle, request, NLM_F_CREATE | NLM_F_EXCL, &op)
            .await
            .map_err(|e| {
                e.with_support_hint(&format!(
                    "this kernel has no `{kind}` link type (module not built or not loaded)"
                ))
            })?;
        // The ack does not carry the new index: look it up by name.
        match self.link_by_name(name).await? {
            Some(link) => Ok(link.index),
            None => Err(NetlinkError::Protocol {
                op: op(),
                detail: "the link vanished right after its creation".into(),
            }),
        }
    }

    /// Moves a link into another network namespace (the lab hands veth ends
    /// to node and pod namespaces).
    pub async fn move_link_to_netns(
        &self,
        index: u32,
        netns_fd: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index)
            .setns_by_fd(netns_fd.as_raw_fd())
            .build();
        self.set_link(message, || {
            format!("moving link {index} to another network namespace")
        })
        .await
    }

    /// Renames a link (the kernel refuses while it is up).
    pub async fn rename_link(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).name(name).build();
        self.set_link(message, || format!("renaming link {index} to {name}"))
            .await
    }

    /// Deletes a link; `NotFound` if it is already gone.
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build());
        conn::ack(&self.handle, request, 0, || {
            format!("deleting link {index}")
        })
        .await
    }

    /// Sets a link administratively up.
    pub async fn set_link_up(&self, index: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.set_link(message, || format!("setting link {index} up"))
            .await
    }

    /// Sets a link administratively down.
    pub async fn set_link_down(&self, index: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).down().build();
        self.set_link(message, || format!("setting link {index} down"))
            .await
    }

    /// Changes a link's MTU in place: weft applies MTU changes to an existing
    /// device instead of ignoring them (flannel #1775).
    pub async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link(message, || format!("setting mtu {mtu} on link {index}"))
            .await
    }

    /// Changes a link's MAC: the VTEP MAC must equal the one published in
    /// the lease, or peers send to a MAC nobody answers (flannel #1795).
    pub async fn set_link_mac(&self, index: u32, mac: Mac) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index)
            .address(mac.octets().to_vec())
            .build();
        self.set_link(message, || format!("setting mac {mac} on link {index}"))
            .await
    }

    /// Makes a link a port of `controller` (a bridge), or of none.
    pub async fn set_link_controller(
        &self,
        index: u32,
        controller: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let b = LinkUnspec::new_with_index(index);
        let message = match controller {
            Some(c) => b.controller(c).build(),
            None => b.nocontroller().build(),
        };
        self.set_link(message, || {
            format!("attaching link {index} to controller {controller:?}")
        })
        .await
    }

    async fn set_link(
        &self,
        message: LinkMessage,
        op: impl Fn() -> String + Sync,
    ) -> Result<(), NetlinkError> {
        conn::ack(&self.handle, RouteNetlinkMessage::SetLink(message), 0, op).await
    }
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
        (Some(InfoKind::Vxlan), Some(InfoData::Vxlan(attrs))) => LinkKind::Vxlan(vxlan_of(attrs)),
        (Some(InfoKind::Vxlan), _) => LinkKind::Vxlan(vxlan_of(Vec::new())),
        (Some(InfoKind::IpIp), data) => LinkKind::Ipip(ipip_of(data)),
        (Some(InfoKind::Wireguard), _) => LinkKind::Wireguard,
        (Some(InfoKind::Bridge), _) => LinkKind::Bridge,
        (Some(InfoKind::Veth), _) => LinkKind::Veth,
        (Some(InfoKind::Tun), _) => LinkKind::Tun,
        (Some(other), _) => LinkKind::Other(other.to_string()),
        (None, _) => LinkKind::Device,
    }
}

fn vxlan_of(attrs: Vec<InfoVxlan>) -> VxlanInfo {
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

fn ipip_of(data: Option<InfoData>) -> IpipInfo {
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
