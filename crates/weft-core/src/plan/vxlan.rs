//! vxlan, as flannel-compat §3.1 describes it: per family a device
//! `flannel.<VNI>` / `flannel-v6.<VNI>`, and per peer a permanent neighbour
//! for its subnet's network address, a `self` FDB entry sending that MAC to
//! the peer's public IP, and an onlink route via that address — or, with
//! DirectRouting and a peer on the same segment, a plain route via its
//! public IP instead.

use crate::backend_data::VxlanData;
use crate::netconf::VxlanOptions;
use crate::offload_policy;
use crate::prefix::Family;

use super::{
    Desired, Dev, DeviceSpec, FdbPlan, NeighPlan, PlanError, PlanInput, VxlanDevice, host_prefix,
};

/// The device name of a family: `flannel.1`, `flannel-v6.1`.
pub fn device_name(family: Family, vni: u32) -> String {
    match family {
        Family::V4 => format!("flannel.{vni}"),
        Family::V6 => format!("flannel-v6.{vni}"),
    }
}

/// An IPv6 outer header is 20 bytes longer than an IPv4 one, and the kernel
/// refuses a vxlan-over-IPv6 device an MTU above the underlay's minus 70.
/// So a v6-underlay device is 20 bytes smaller, and the pod MTU written to
/// subnet.env is the smallest device's, so no pod sends what a tunnel
/// cannot carry. (flannel leaves the v6 device at the kernel default and
/// advertises the v4 device's MTU, which then overfills the v6 tunnel.)
fn v6_extra_header(local: std::net::IpAddr) -> u32 {
    if local.is_ipv6() { 20 } else { 0 }
}

pub(super) fn plan(
    input: &PlanInput<'_>,
    opts: &VxlanOptions,
    mtu: u32,
) -> Result<Desired, PlanError> {
    let mut desired = Desired::with_mtu(mtu);
    let tx_checksum_offload = offload_policy::decide(
        input.kernel_release,
        input.underlay.driver.as_deref(),
        opts.tx_checksum_offload,
    )
    .on;
    for family in Family::ALL {
        let Some(own) = input.own.get(family) else {
            continue;
        };
        if input.cfg.pool(family).is_none() {
            continue;
        }
        let local = input
            .underlay
            .addr(family)
            .ok_or_else(|| PlanError::NoTunnelSource {
                backend: "vxlan",
                family,
                iface: input.underlay.name.clone(),
            })?;
        let mac = input
            .local
            .vtep_mac(family)
            .ok_or(PlanError::MissingVtepMac(family))?;
        let name = device_name(family, opts.vni);
        let device_mtu = mtu.saturating_sub(v6_extra_header(local));
        desired.mtu = desired.mtu.min(device_mtu);
        desired.devices.push(DeviceSpec::Vxlan(VxlanDevice {
            name: name.clone(),
            vni: opts.vni,
            port: opts.port,
            local,
            underlay_index: input.underlay.index,
            mtu: device_mtu,
            mac,
            gbp: opts.gbp,
            learning: opts.learning,
            tx_checksum_offload,
            address: host_prefix(own),
        }));
        for (id, peer) in input.peers {
            let Some(subnet) = peer.subnets.get(family) else {
                continue;
            };
            let Some(public) = desired.public_addr_or_skip(id, peer, family) else {
                continue;
            };
            if opts.direct_routing && input.underlay.on_link(public) {
                desired.route_via(subnet, public, Dev::Underlay, false);
                continue;
            }
            let data = match VxlanData::decode(peer.attrs.backend_data_for(family)) {
                Ok(d) => d,
                Err(e) => {
                    desired
                        .skipped
                        .push((id.clone(), format!("{family} backend data: {e}")));
                    continue;
                }
            };
            let gateway = subnet.network();
            desired.neighbours.push(NeighPlan {
                dev: name.clone(),
                ip: gateway,
                mac: data.vtep_mac,
            });
            desired.fdb.push(FdbPlan {
                dev: name.clone(),
                mac: data.vtep_mac,
                dst: public,
            });
            desired.route_via(subnet, gateway, Dev::Named(name.clone()), true);
        }
    }
    Ok(desired)
}
