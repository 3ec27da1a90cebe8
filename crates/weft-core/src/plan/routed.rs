//! The routed backends: host-gw (a route to each peer subnet via the peer's
//! public IP, which must be on the same segment) and ipip (`flannel.ipip`,
//! an onlink route via the peer's public IP through the tunnel, or straight
//! out of the underlay with DirectRouting for on-link peers).

use crate::netconf::IpipOptions;
use crate::prefix::Family;

use super::{Desired, Dev, DeviceSpec, IpipDevice, PlanError, PlanInput, host_prefix};

/// flannel's ipip device name.
pub const IPIP_DEVICE: &str = "flannel.ipip";

pub(super) fn host_gw(input: &PlanInput<'_>, mtu: u32) -> Desired {
    let mut desired = Desired::with_mtu(mtu);
    for (id, peer) in input.peers {
        for family in Family::ALL {
            let (Some(subnet), Some(_)) = (peer.subnets.get(family), input.own.get(family)) else {
                continue;
            };
            let Some(public) = desired.public_addr_or_skip(id, peer, family) else {
                continue;
            };
            if !input.underlay.on_link(public) {
                desired.skipped.push((
                    id.clone(),
                    format!(
                        "its public IP {public} is not on this node's network ({}): host-gw needs every node on one layer-2 segment; use vxlan (optionally with DirectRouting) across routers",
                        input
                            .underlay
                            .connected
                            .iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                continue;
            }
            desired.route_via(subnet, public, Dev::Underlay, false);
        }
    }
    desired
}

pub(super) fn ipip(
    input: &PlanInput<'_>,
    opts: &IpipOptions,
    mtu: u32,
) -> Result<Desired, PlanError> {
    let mut desired = Desired::with_mtu(mtu);
    let Some(own) = input.own.get(Family::V4) else {
        return Ok(desired);
    };
    let local = input
        .underlay
        .addr_v4
        .ok_or_else(|| PlanError::NoTunnelSource {
            backend: "ipip",
            family: Family::V4,
            iface: input.underlay.name.clone(),
        })?;
    desired.devices.push(DeviceSpec::Ipip(IpipDevice {
        name: IPIP_DEVICE.to_owned(),
        local,
        mtu,
        address: host_prefix(own),
    }));
    for (id, peer) in input.peers {
        let Some(subnet) = peer.subnets.get(Family::V4) else {
            continue;
        };
        let Some(public) = desired.public_addr_or_skip(id, peer, Family::V4) else {
            continue;
        };
        let dev = if opts.direct_routing && input.underlay.on_link(public) {
            Dev::Underlay
        } else {
            Dev::Named(IPIP_DEVICE.to_owned())
        };
        desired.route_via(subnet, public, dev, true);
    }
    Ok(desired)
}
