//! wireguard, as flannel-compat §3.4 describes it: `separate` mode gives
//! each family a device (`flannel-wg` on ListenPort, `flannel-wg-v6` on
//! ListenPortV6), the single-device modes (`auto`, `ipv4`, `ipv6`) one
//! `flannel-wg` for both. Each device holds the subnet's network address as
//! a host prefix and a link-scope route for the whole cluster network; each
//! peer is its public key, an endpoint and its subnet(s) as allowed IPs.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::backend_data::WireguardData;
use crate::lease::Lease;
use crate::netconf::{WireguardMode, WireguardOptions};
use crate::prefix::Family;
use crate::wg_key::WgKey;

use super::{Desired, Dev, DeviceSpec, PlanInput, RoutePlan, RouteTarget, host_prefix};

/// The IPv4 (or single) device.
pub const WG_DEVICE: &str = "flannel-wg";
/// The IPv6 device of `separate` mode.
pub const WG_DEVICE_V6: &str = "flannel-wg-v6";

/// One WireGuard device and its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgDevicePlan {
    pub name: String,
    pub listen_port: u16,
    pub mtu: u32,
    /// One host prefix per family the device carries.
    pub addresses: Vec<IpNet>,
    pub peers: Vec<WgPeerPlan>,
}

/// One peer as the device should know it (the PSK is the cluster's, added
/// by the dataplane, which keeps secrets out of plans and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerPlan {
    /// The peer's store id, for messages.
    pub peer: String,
    pub public_key: WgKey,
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<IpNet>,
    pub keepalive: Option<u16>,
}

/// The families each device carries, by mode.
fn layout(opts: &WireguardOptions, families: &[Family]) -> Vec<(&'static str, u16, Vec<Family>)> {
    match opts.mode {
        WireguardMode::Separate => families
            .iter()
            .map(|f| match f {
                Family::V4 => (WG_DEVICE, opts.listen_port, vec![Family::V4]),
                Family::V6 => (WG_DEVICE_V6, opts.listen_port_v6, vec![Family::V6]),
            })
            .collect(),
        _ if families.is_empty() => Vec::new(),
        _ => vec![(WG_DEVICE, opts.listen_port, families.to_vec())],
    }
}

fn is_ula(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00)
}

fn is_private_v4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_private())
}

/// flannel's endpoint family for a single-device mode.
fn endpoint_family(mode: WireguardMode, input: &PlanInput<'_>, peer: &Lease) -> Family {
    let v4 = peer.attrs.public_addr(Family::V4);
    let v6 = peer.attrs.public_addr(Family::V6);
    match mode {
        WireguardMode::Ipv6 => Family::V6,
        WireguardMode::Ipv4 | WireguardMode::Separate => Family::V4,
        WireguardMode::Auto => match (v4, v6) {
            (_, None) => Family::V4,
            (Some(a), Some(_)) if !is_private_v4(a) && input.underlay.addr_v4.is_some() => {
                Family::V4
            }
            (_, Some(b))
                if !is_ula(b)
                    && input
                        .underlay
                        .addr_v6
                        .is_some_and(|l| !is_ula(IpAddr::V6(l))) =>
            {
                Family::V6
            }
            (Some(_), Some(_)) => Family::V4,
            (None, Some(_)) => Family::V6,
        },
    }
}

fn peer_plan(
    id: &str,
    peer: &Lease,
    carried: &[Family],
    endpoint_family: Family,
    opts: &WireguardOptions,
    own_port: u16,
) -> Result<WgPeerPlan, String> {
    let allowed: Vec<IpNet> = carried
        .iter()
        .filter_map(|f| peer.subnets.get(*f))
        .collect();
    if allowed.is_empty() {
        return Err("no subnet of a family this device carries".to_owned());
    }
    let data = WireguardData::decode(peer.attrs.backend_data_for(endpoint_family))
        .or_else(|_| {
            carried
                .iter()
                .find_map(|f| WireguardData::decode(peer.attrs.backend_data_for(*f)).ok())
                .ok_or(())
        })
        .map_err(|()| format!("no usable {endpoint_family} WireGuard backend data"))?;
    let ip = peer
        .attrs
        .public_addr(endpoint_family)
        .ok_or_else(|| format!("no public {endpoint_family} address for its WireGuard endpoint"))?;
    // flannel before 0.14 published no port: the peer then uses ours.
    let port = if data.port == 0 { own_port } else { data.port };
    Ok(WgPeerPlan {
        peer: id.to_owned(),
        public_key: data.public_key,
        endpoint: SocketAddr::new(ip, port),
        allowed_ips: allowed,
        keepalive: (opts.persistent_keepalive_interval > 0)
            .then_some(opts.persistent_keepalive_interval),
    })
}

pub(super) fn plan(input: &PlanInput<'_>, opts: &WireguardOptions, mtu: u32) -> Desired {
    let mut desired = Desired::with_mtu(mtu);
    let families: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| input.cfg.pool(*f).is_some() && input.own.get(*f).is_some())
        .collect();
    for (name, port, carried) in layout(opts, &families) {
        let mut device = WgDevicePlan {
            name: name.to_owned(),
            listen_port: port,
            mtu,
            addresses: carried
                .iter()
                .filter_map(|f| input.own.get(*f).map(host_prefix))
                .collect(),
            peers: Vec::new(),
        };
        for f in &carried {
            if let Some(pool) = input.cfg.pool(*f) {
                desired.routes.push(RoutePlan {
                    dst: pool.network,
                    target: RouteTarget::Link {
                        dev: Dev::Named(name.to_owned()),
                    },
                });
            }
        }
        for (id, peer) in input.peers {
            let endpoint_family = match opts.mode {
                WireguardMode::Separate => carried[0],
                mode => endpoint_family(mode, input, peer),
            };
            if carried.iter().all(|f| peer.subnets.get(*f).is_none()) {
                continue;
            }
            match peer_plan(id, peer, &carried, endpoint_family, opts, port) {
                Ok(p) => device.peers.push(p),
                Err(why) => desired.skipped.push((id.clone(), format!("{name}: {why}"))),
            }
        }
        desired.devices.push(DeviceSpec::Wireguard(device));
    }
    desired
}
