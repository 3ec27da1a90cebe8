//! The ipsec backend's plan: one tunnel per peer, as flannel's
//! `pkg/backend/ipsec` makes it. No device and no route (the node's own
//! route to the peer subnet, usually the default route, is taken, and the
//! XFRM policy rewrites the packet on the way out); three XFRM policies and
//! one IKEv2 connection in charon per peer.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::prefix::Family;

use super::{Desired, PlanError, PlanInput};

/// flannel's reqid on every policy and child SA.
pub const IPSEC_REQID: u32 = 11;

/// One peer's tunnel: the local subnet to the remote one, ESP in tunnel
/// mode between the two public IPs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpsecTunnel {
    /// The peer's store id, for logs and status.
    pub peer: String,
    pub local_public: Ipv4Addr,
    pub remote_public: Ipv4Addr,
    pub local_subnet: Ipv4Net,
    pub remote_subnet: Ipv4Net,
}

impl IpsecTunnel {
    /// The IKE connection's name, flannel's
    /// `<localPublicIP>-<localSubnet>-<remoteSubnet>-<remotePublicIP>`: a
    /// flannel node and a weft node show the same names in `swanctl`.
    pub fn conn_name(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.local_public, self.local_subnet, self.remote_subnet, self.remote_public
        )
    }

    /// The child SA's name, flannel's `<localSubnet>-<remoteSubnet>`.
    pub fn child_name(&self) -> String {
        format!("{}-{}", self.local_subnet, self.remote_subnet)
    }
}

/// Reads a connection name back: `Some` for a name [`IpsecTunnel::conn_name`]
/// makes, which is how weft knows which of charon's connections are its own
/// (or a flannel predecessor's) to unload.
pub fn parse_conn_name(name: &str) -> Option<(Ipv4Addr, Ipv4Net, Ipv4Net, Ipv4Addr)> {
    let mut parts = name.splitn(4, '-');
    let local = parts.next()?.parse().ok()?;
    let local_subnet = parts.next()?.parse().ok()?;
    let remote_subnet = parts.next()?.parse().ok()?;
    let remote = parts.next()?.parse().ok()?;
    Some((local, local_subnet, remote_subnet, remote))
}

pub(super) fn plan(input: &PlanInput<'_>, mtu: u32) -> Result<Desired, PlanError> {
    let mut desired = Desired::with_mtu(mtu);
    let Some(ipnet::IpNet::V4(own)) = input.own.get(Family::V4) else {
        return Ok(desired);
    };
    let local = input
        .underlay
        .addr_v4
        .ok_or_else(|| PlanError::NoTunnelSource {
            backend: "ipsec",
            family: Family::V4,
            iface: input.underlay.name.clone(),
        })?;
    for (id, peer) in input.peers {
        let Some(ipnet::IpNet::V4(subnet)) = peer.subnets.get(Family::V4) else {
            continue;
        };
        let Some(std::net::IpAddr::V4(public)) = desired.public_addr_or_skip(id, peer, Family::V4)
        else {
            continue;
        };
        if public == local {
            desired.skipped.push((
                id.clone(),
                format!("its public IP {public} is this node's own: no tunnel to itself"),
            ));
            continue;
        }
        desired.ipsec.push(IpsecTunnel {
            peer: id.clone(),
            local_public: local,
            remote_public: public,
            local_subnet: own,
            remote_subnet: subnet,
        });
    }
    Ok(desired)
}
