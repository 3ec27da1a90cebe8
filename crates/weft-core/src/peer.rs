//! Screening of peer leases before anything reaches the kernel.
//!
//! Another node may be misconfigured or compromised, so every lease read from
//! a store is untrusted input. A lease that fails a check is left out of the
//! snapshot handed to the planner, with a reason an operator can act on; it
//! is never programmed and never stops the agent.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::backend_data::{BackendDataError, VxlanData, WireguardData};
use crate::etcd_key::SubnetKeyError;
use crate::lease::{Lease, LeaseDecodeError, LeaseSubnets};
use crate::netconf::{BackendConfig, NetConfig};
use crate::prefix::{self, Family};

/// Why a peer lease was left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRejection {
    #[error(transparent)]
    BadKey(#[from] SubnetKeyError),
    #[error(transparent)]
    BadValue(#[from] LeaseDecodeError),
    #[error("it holds no subnet of an enabled address family")]
    NoSubnet,
    #[error("subnet {subnet} is not a /{subnet_len} inside the cluster network {network}")]
    OutsideNetwork {
        subnet: IpNet,
        network: IpNet,
        subnet_len: u8,
    },
    #[error("it publishes no public IP")]
    NoPublicIp,
    #[error("public IP {ip} is not a usable unicast address")]
    PublicIpUnusable { ip: IpAddr },
    #[error("public IP {ip} lies inside the pod network {network}")]
    PublicIpInPodNetwork { ip: IpAddr, network: IpNet },
    #[error("subnet {subnet} overlaps this node's own subnet")]
    OverlapsOwn { subnet: IpNet },
    #[error("subnet {subnet} overlaps the lease of {holder}, which came first")]
    Overlaps { subnet: IpNet, holder: String },
    #[error("backend type {theirs:?} differs from this node's {ours:?}")]
    OtherBackend { theirs: String, ours: String },
    #[error("{family} backend data: {error}")]
    BackendData {
        family: Family,
        error: BackendDataError,
    },
}

impl PeerRejection {
    /// A short stable label, used as the `reason` of the skipped-peer counter.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRejection::BadKey(_) => "bad_key",
            PeerRejection::BadValue(_) => "bad_value",
            PeerRejection::NoSubnet => "no_subnet",
            PeerRejection::OutsideNetwork { .. } => "outside_network",
            PeerRejection::NoPublicIp | PeerRejection::PublicIpUnusable { .. } => "bad_public_ip",
            PeerRejection::PublicIpInPodNetwork { .. } => "public_ip_in_pod_network",
            PeerRejection::OverlapsOwn { .. } | PeerRejection::Overlaps { .. } => "overlap",
            PeerRejection::OtherBackend { .. } => "other_backend",
            PeerRejection::BackendData { .. } => "bad_backend_data",
        }
    }
}

/// A lease that was left out, named by its store identity (etcd key or node
/// name) so the operator can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedPeer {
    pub id: String,
    pub reason: PeerRejection,
}

impl fmt::Display for RejectedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer lease {} skipped: {}", self.id, self.reason)
    }
}

/// The outcome of screening: leases safe to program, and those left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenedPeers {
    pub accepted: Vec<(String, Lease)>,
    pub rejected: Vec<RejectedPeer>,
}

/// Screens candidate peer leases, given in priority order: when two overlap,
/// the earlier one (stores pass them oldest first) is kept. The lease whose
/// subnets equal `own` is this node's and is dropped silently. Subnets of a
/// family the cluster does not enable are stripped from accepted leases.
pub fn screen(
    cfg: &NetConfig,
    own: &LeaseSubnets,
    candidates: impl IntoIterator<Item = (String, Result<Lease, PeerRejection>)>,
) -> ScreenedPeers {
    let mut out = ScreenedPeers::default();
    let mut holders: HashMap<IpNet, String> = HashMap::new();
    for (id, candidate) in candidates {
        let checked = candidate.and_then(|lease| {
            if lease.subnets == *own {
                return Ok(None);
            }
            let lease = check_one(cfg, lease)?;
            check_overlap(own, &holders, &lease)?;
            Ok(Some(lease))
        });
        match checked {
            Ok(None) => {}
            Ok(Some(lease)) => {
                for sn in lease.subnets.iter() {
                    holders.insert(sn, id.clone());
                }
                out.accepted.push((id, lease));
            }
            Err(reason) => out.rejected.push(RejectedPeer { id, reason }),
        }
    }
    out
}

/// Checks one lease on its own, returning it with disabled families removed.
fn check_one(cfg: &NetConfig, mut lease: Lease) -> Result<Lease, PeerRejection> {
    if cfg.ipv4.is_none() {
        lease.subnets.v4 = None;
    }
    if cfg.ipv6.is_none() {
        lease.subnets.v6 = None;
    }
    if lease.subnets.is_empty() {
        return Err(PeerRejection::NoSubnet);
    }
    for subnet in lease.subnets.iter() {
        let Some(pool) = cfg.pool(Family::of_net(subnet)) else {
            continue;
        };
        if subnet.prefix_len() != pool.subnet_len
            || subnet.trunc() != subnet
            || !pool.network.contains(&subnet)
        {
            return Err(PeerRejection::OutsideNetwork {
                subnet,
                network: pool.network,
                subnet_len: pool.subnet_len,
            });
        }
    }
    check_public_ips(cfg, &lease)?;
    check_backend(cfg, &lease)?;
    Ok(lease)
}

fn check_public_ips(cfg: &NetConfig, lease: &Lease) -> Result<(), PeerRejection> {
    let ips: Vec<IpAddr> = Family::ALL
        .iter()
        .filter_map(|f| lease.attrs.public_addr(*f))
        .collect();
    if ips.is_empty() {
        return Err(PeerRejection::NoPublicIp);
    }
    for ip in ips {
        if !usable_unicast(ip) {
            return Err(PeerRejection::PublicIpUnusable { ip });
        }
        if let Some(pool) = cfg.pools().find(|p| p.network.contains(&ip)) {
            return Err(PeerRejection::PublicIpInPodNetwork {
                ip,
                network: pool.network,
            });
        }
    }
    Ok(())
}

/// An address a tunnel or route may point at.
fn usable_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.octets()[0] == 0)
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_unicast_link_local()
                || a.to_ipv4_mapped().is_some())
        }
    }
}

fn check_backend(cfg: &NetConfig, lease: &Lease) -> Result<(), PeerRejection> {
    let ours = cfg.backend.type_name();
    if !lease.attrs.backend_type.eq_ignore_ascii_case(ours) {
        return Err(PeerRejection::OtherBackend {
            theirs: lease.attrs.backend_type.chars().take(64).collect(),
            ours: ours.to_owned(),
        });
    }
    for family in Family::ALL {
        if lease.subnets.get(family).is_none() {
            continue;
        }
        let data = lease.attrs.backend_data_for(family);
        let result = match &cfg.backend {
            BackendConfig::Vxlan(_) => VxlanData::decode(data).map(|_| ()),
            BackendConfig::Wireguard(_) => WireguardData::decode(data).map(|_| ()),
            _ => Ok(()),
        };
        result.map_err(|error| PeerRejection::BackendData { family, error })?;
    }
    Ok(())
}

fn check_overlap(
    own: &LeaseSubnets,
    holders: &HashMap<IpNet, String>,
    lease: &Lease,
) -> Result<(), PeerRejection> {
    for subnet in lease.subnets.iter() {
        if own.iter().any(|o| prefix::overlaps(o, subnet)) {
            return Err(PeerRejection::OverlapsOwn { subnet });
        }
        // Accepted subnets all have the pool's length, so an overlap is an
        // exact match: one hash lookup instead of a scan.
        if let Some(holder) = holders.get(&subnet) {
            return Err(PeerRejection::Overlaps {
                subnet,
                holder: holder.clone(),
            });
        }
    }
    Ok(())
}
