//! The planner: everything the kernel should hold, as a pure function of
//! the config, this node's lease, its underlay and the screened peers.
//!
//! The dataplane never decides anything: it diffs this desired state
//! against the kernel and applies the difference. That keeps every rule of
//! flannel's behaviour (device names, MTU arithmetic, which peer gets a
//! direct route) testable without root.

mod ipsec;
mod routed;
mod vxlan;
mod wireguard;

pub use ipsec::{IPSEC_REQID, IpsecTunnel, parse_conn_name};
pub use vxlan::device_name as vxlan_device_name;
pub use wireguard::{WG_DEVICE, WG_DEVICE_V6, WgDevicePlan, WgPeerPlan};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::lease::{Lease, LeaseSubnets};
use crate::mac::Mac;
use crate::netconf::{BackendConfig, NetConfig};
use crate::prefix::Family;

/// The node's external interface as the agent found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// The interface's own addresses: tunnel sources.
    pub addr_v4: Option<Ipv4Addr>,
    pub addr_v6: Option<Ipv6Addr>,
    /// Prefixes directly attached to the interface. A peer whose public IP
    /// lies in one is on the same layer-2 segment: host-gw can route to it
    /// and DirectRouting skips the tunnel for it.
    pub connected: Vec<IpNet>,
    /// The interface's driver (`ethtool -i`), `None` if the kernel did not
    /// say: some drivers corrupt vxlan checksums with TX checksum offload on
    /// ([`crate::offload_policy`]).
    pub driver: Option<String>,
}

impl Underlay {
    pub fn addr(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.addr_v4.map(IpAddr::V4),
            Family::V6 => self.addr_v6.map(IpAddr::V6),
        }
    }

    /// True when `ip` is reachable without a router.
    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.connected.iter().any(|n| n.contains(&ip))
    }
}

/// What the node chose for itself and publishes (VTEP MACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalIdentity {
    pub vtep_mac_v4: Option<Mac>,
    pub vtep_mac_v6: Option<Mac>,
}

impl LocalIdentity {
    pub fn vtep_mac(&self, family: Family) -> Option<Mac> {
        match family {
            Family::V4 => self.vtep_mac_v4,
            Family::V6 => self.vtep_mac_v6,
        }
    }
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub cfg: &'a NetConfig,
    pub own: &'a LeaseSubnets,
    pub underlay: &'a Underlay,
    pub local: &'a LocalIdentity,
    /// Screened peers (see [`crate::peer::screen`]), with their store ids.
    pub peers: &'a [(String, Lease)],
    /// `--ip-blackhole-route`.
    pub blackhole: bool,
    /// The running kernel's release (`uname -r`): kernels without the fix
    /// for flannel #1279 get vxlan TX checksum offload off
    /// ([`crate::offload_policy`]).
    pub kernel_release: &'a str,
}

/// A device weft creates and owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Vxlan(VxlanDevice),
    Ipip(IpipDevice),
    /// Created by the WireGuard layer (kernel link or userspace TUN); the
    /// reconciler keeps its MTU, addresses and routes.
    Wireguard(WgDevicePlan),
}

impl DeviceSpec {
    pub fn name(&self) -> &str {
        match self {
            DeviceSpec::Vxlan(d) => &d.name,
            DeviceSpec::Ipip(d) => &d.name,
            DeviceSpec::Wireguard(d) => &d.name,
        }
    }

    pub fn mtu(&self) -> u32 {
        match self {
            DeviceSpec::Vxlan(d) => d.mtu,
            DeviceSpec::Ipip(d) => d.mtu,
            DeviceSpec::Wireguard(d) => d.mtu,
        }
    }

    /// The addresses the device must hold, and no other.
    pub fn addresses(&self) -> Vec<IpNet> {
        match self {
            DeviceSpec::Vxlan(d) => vec![d.address],
            DeviceSpec::Ipip(d) => vec![d.address],
            DeviceSpec::Wireguard(d) => d.addresses.clone(),
        }
    }
}

/// `flannel.<VNI>` / `flannel-v6.<VNI>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local: IpAddr,
    pub underlay_index: u32,
    pub mtu: u32,
    pub mac: Mac,
    pub gbp: bool,
    pub learning: bool,
    /// TX checksum offload, as [`crate::offload_policy::decide`] chose it.
    pub tx_checksum_offload: bool,
    /// The subnet's network address as a host prefix (`10.244.1.0/32`).
    pub address: IpNet,
}

/// `flannel.ipip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipDevice {
    pub name: String,
    pub local: Ipv4Addr,
    pub mtu: u32,
    pub address: IpNet,
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// Via a gateway out of a device: the underlay or one of weft's.
    Via {
        gateway: IpAddr,
        dev: Dev,
        onlink: bool,
    },
    /// Straight out of a device, no gateway (`scope link`): WireGuard's
    /// route for the whole cluster network.
    Link { dev: Dev },
    /// `--ip-blackhole-route`: drop traffic for our subnet that no pod took.
    Blackhole,
}

/// A device named in desired state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dev {
    Underlay,
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePlan {
    pub dst: IpNet,
    pub target: RouteTarget,
}

/// A permanent neighbour (ARP/NDP) entry on one of weft's devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NeighPlan {
    pub dev: String,
    pub ip: IpAddr,
    pub mac: Mac,
}

/// A permanent `self` FDB entry on a vxlan device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FdbPlan {
    pub dev: String,
    pub mac: Mac,
    pub dst: IpAddr,
}

/// The whole desired state of the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    /// The pod MTU written to subnet.env.
    pub mtu: u32,
    pub devices: Vec<DeviceSpec>,
    pub routes: Vec<RoutePlan>,
    pub neighbours: Vec<NeighPlan>,
    pub fdb: Vec<FdbPlan>,
    /// ipsec: one tunnel (XFRM policies and an IKE connection) per peer.
    pub ipsec: Vec<IpsecTunnel>,
    /// Peers (or one family of a peer) deliberately not programmed, with
    /// the reason, for logs and `weft status`.
    pub skipped: Vec<(String, String)>,
}

impl Desired {
    /// An empty plan with the pod MTU: what every backend starts from.
    fn with_mtu(mtu: u32) -> Desired {
        Desired {
            mtu,
            ..Desired::default()
        }
    }

    /// The peer's public address of `family`. A peer without one is noted
    /// as skipped for that family (and `None` returned): a tunnel or route
    /// needs somewhere to go, and the operator needs to see why none was
    /// made.
    fn public_addr_or_skip(&mut self, id: &str, peer: &Lease, family: Family) -> Option<IpAddr> {
        let public = peer.attrs.public_addr(family);
        if public.is_none() {
            self.skipped.push((
                id.to_owned(),
                format!("no public {family} address for its {family} subnet"),
            ));
        }
        public
    }

    /// A route to `dst` via `gateway` out of `dev`.
    fn route_via(&mut self, dst: IpNet, gateway: IpAddr, dev: Dev, onlink: bool) {
        self.routes.push(RoutePlan {
            dst,
            target: RouteTarget::Via {
                gateway,
                dev,
                onlink,
            },
        });
    }
}

/// Why no plan could be made at all (configuration the node cannot run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the {backend} backend needs an {family} address on {iface} to send tunnels from")]
    NoTunnelSource {
        backend: &'static str,
        family: Family,
        iface: String,
    },
    #[error(
        "MTU {mtu} of {what} leaves no room for the {backend} backend's {overhead}-byte overhead"
    )]
    MtuTooSmall {
        what: String,
        mtu: u32,
        backend: &'static str,
        overhead: u32,
    },
    #[error("no {0} VTEP MAC was chosen for the vxlan device")]
    MissingVtepMac(Family),
}

/// The pod MTU: the configured (or underlay) MTU minus the encapsulation.
fn pod_mtu(input: &PlanInput<'_>, configured: Option<u32>) -> Result<u32, PlanError> {
    let base = configured.unwrap_or(input.underlay.mtu);
    let overhead = input.cfg.backend.encap_overhead();
    base.checked_sub(overhead)
        .filter(|m| *m >= 68)
        .ok_or_else(|| PlanError::MtuTooSmall {
            what: if configured.is_some() {
                "Backend.MTU".to_owned()
            } else {
                input.underlay.name.clone()
            },
            mtu: base,
            backend: input.cfg.backend.config_type(),
            overhead,
        })
}

/// The desired state for `input`.
pub fn plan(input: &PlanInput<'_>) -> Result<Desired, PlanError> {
    let mut desired = match &input.cfg.backend {
        BackendConfig::Vxlan(opts) => {
            let mtu = pod_mtu(input, opts.mtu)?;
            vxlan::plan(input, opts, mtu)?
        }
        BackendConfig::HostGw => routed::host_gw(input, pod_mtu(input, None)?),
        BackendConfig::Ipip(opts) => routed::ipip(input, opts, pod_mtu(input, None)?)?,
        BackendConfig::None => Desired::with_mtu(pod_mtu(input, None)?),
        BackendConfig::Wireguard(opts) => {
            let mtu = pod_mtu(input, opts.mtu)?;
            wireguard::plan(input, opts, mtu)
        }
        BackendConfig::Ipsec(_) => ipsec::plan(input, pod_mtu(input, None)?)?,
    };
    if input.blackhole {
        for sn in input.own.iter() {
            desired.routes.push(RoutePlan {
                dst: sn,
                target: RouteTarget::Blackhole,
            });
        }
    }
    Ok(desired)
}

/// The host prefix of a subnet's network address (`10.244.1.0/32`), the
/// address flannel puts on its devices so no broadcast route is created.
pub(crate) fn host_prefix(subnet: IpNet) -> IpNet {
    let len = Family::of_net(subnet).bits();
    IpNet::new(subnet.network(), len).unwrap_or(subnet)
}

#[cfg(test)]
mod tests;
