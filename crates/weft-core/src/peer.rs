//! Screening of peer leases before anything reaches the kernel.
//!
//! Another node may be misconfigured or compromised, so every lease read from
//! a store is untrusted input. A lease that fails a check is left out of the
//! snapshot handed to the planner, with a reason an operator can act on; it
//! is never programmed and never stops the agent.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::backend_data::{BackendDataError, VxlanData, WireguardData};
use crate::etcd_key::SubnetKeyError;
use crate::fast_hash::FastMap;
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

/// The verdict on one lease by itself: everything but overlaps with other
/// leases. It depends only on the config, this node's subnets and the
/// lease, so a store computes it once when a lease changes instead of
/// re-checking every lease (and re-parsing its backend data) on every
/// snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// This node's own lease: left out silently.
    Own,
    /// Passed every check on its own, disabled families removed.
    Passed(Lease),
    Rejected(PeerRejection),
}

/// Checks one candidate on its own (see [`Precheck`]). A lease whose
/// subnets equal `own` is this node's: in etcd and the local store the
/// subnets are the only identity a lease has.
pub fn precheck(
    cfg: &NetConfig,
    own: &LeaseSubnets,
    candidate: Result<Lease, PeerRejection>,
) -> Precheck {
    match candidate {
        Ok(lease) if lease.subnets == *own => Precheck::Own,
        other => precheck_other(cfg, other),
    }
}

/// [`precheck`] for a store that has already left this node's own lease
/// out by identity (the Kubernetes store, by node name): here a lease with
/// exactly our subnets is another node claiming them, an overlap to warn
/// about and count, not something to drop silently.
pub fn precheck_other(cfg: &NetConfig, candidate: Result<Lease, PeerRejection>) -> Precheck {
    match candidate {
        Err(reason) => Precheck::Rejected(reason),
        Ok(lease) => match check_one(cfg, lease) {
            Ok(lease) => Precheck::Passed(lease),
            Err(reason) => Precheck::Rejected(reason),
        },
    }
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
    screen_with(own, candidates, |c| precheck(cfg, own, c))
}

/// [`screen`] for a store that has left this node's own lease out by
/// identity (see [`precheck_other`]): every candidate is another node's.
pub fn screen_others(
    cfg: &NetConfig,
    own: &LeaseSubnets,
    candidates: impl IntoIterator<Item = (String, Result<Lease, PeerRejection>)>,
) -> ScreenedPeers {
    screen_with(own, candidates, |c| precheck_other(cfg, c))
}

/// Prechecks every candidate with `check`, then settles the overlaps: the
/// one-shot screens differ only in how they tell this node's own lease.
fn screen_with(
    own: &LeaseSubnets,
    candidates: impl IntoIterator<Item = (String, Result<Lease, PeerRejection>)>,
    check: impl Fn(Result<Lease, PeerRejection>) -> Precheck,
) -> ScreenedPeers {
    let checked: Vec<(String, Precheck)> = candidates
        .into_iter()
        .map(|(id, c)| (id, check(c)))
        .collect();
    screen_prechecked(own, checked.iter().map(|(id, c)| (id.as_str(), c)))
}

/// [`screen`] over candidates already [`precheck`]ed with the same `own`:
/// only the overlaps between them are left to decide.
pub fn screen_prechecked<'a>(
    own: &LeaseSubnets,
    candidates: impl IntoIterator<Item = (&'a str, &'a Precheck)>,
) -> ScreenedPeers {
    let mut out = ScreenedPeers::default();
    let mut holders: FastMap<IpNet, &'a str> = FastMap::default();
    for (id, checked) in candidates {
        let lease = match checked {
            Precheck::Own => continue,
            Precheck::Rejected(reason) => {
                out.rejected.push(RejectedPeer {
                    id: id.to_owned(),
                    reason: reason.clone(),
                });
                continue;
            }
            Precheck::Passed(lease) => lease,
        };
        match check_overlap(own, &holders, lease) {
            Ok(()) => {
                for sn in lease.subnets.iter() {
                    holders.insert(sn, id);
                }
                out.accepted.push((id.to_owned(), lease.clone()));
            }
            Err(reason) => out.rejected.push(RejectedPeer {
                id: id.to_owned(),
                reason,
            }),
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
    holders: &FastMap<IpNet, &str>,
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
                holder: (*holder).to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_data::VxlanData;
    use crate::mac::Mac;
    use crate::test_leases::{VXLAN_V4, cfg, v4, v4_lease};

    fn lease(subnet: &str, ip: &str, backend: &str) -> Result<Lease, PeerRejection> {
        let data = VxlanData {
            vni: 1,
            vtep_mac: Mac([0x0e, 0, 0, 0, 0, 1]),
        };
        Ok(v4_lease(subnet, ip, backend, Some(data.encode())))
    }

    /// The store checks each lease once and screens the cached verdicts:
    /// the outcome must be exactly the one-shot screen's.
    #[test]
    fn prechecked_screening_equals_screening() {
        let (cfg, own) = (cfg(VXLAN_V4), v4("10.244.6.0/24"));
        let candidates = vec![
            ("a".to_owned(), lease("10.244.1.0/24", "192.0.2.2", "vxlan")),
            (
                "own".to_owned(),
                lease("10.244.6.0/24", "192.0.2.1", "vxlan"),
            ),
            (
                "dup".to_owned(),
                lease("10.244.1.0/24", "192.0.2.3", "vxlan"),
            ),
            (
                "other".to_owned(),
                lease("10.244.2.0/24", "192.0.2.4", "host-gw"),
            ),
            (
                "outside".to_owned(),
                lease("10.9.2.0/24", "192.0.2.5", "vxlan"),
            ),
            ("bad".to_owned(), Err(PeerRejection::NoSubnet)),
            ("b".to_owned(), lease("10.244.3.0/24", "192.0.2.6", "vxlan")),
        ];
        let direct = screen(&cfg, &own, candidates.clone());
        let checked: Vec<(String, Precheck)> = candidates
            .into_iter()
            .map(|(id, c)| (id, precheck(&cfg, &own, c)))
            .collect();
        assert_eq!(checked[1].1, Precheck::Own);
        let cached = screen_prechecked(&own, checked.iter().map(|(id, c)| (id.as_str(), c)));
        assert_eq!(direct, cached);
        let ids: Vec<&str> = direct.accepted.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let kinds: Vec<&str> = direct.rejected.iter().map(|r| r.reason.kind()).collect();
        assert_eq!(
            kinds,
            ["overlap", "other_backend", "outside_network", "no_subnet"]
        );
    }

    /// In the Kubernetes store our node is left out by name, so another
    /// node carrying exactly our podCIDR is a conflict to report, where
    /// [`screen`] (etcd: subnets are the identity) would take it for us.
    #[test]
    fn another_node_with_our_exact_subnet_is_an_overlap() {
        let (cfg, own) = (cfg(VXLAN_V4), v4("10.244.6.0/24"));
        let candidates = vec![
            (
                "node-b".to_owned(),
                lease("10.244.6.0/24", "192.0.2.2", "vxlan"),
            ),
            (
                "node-c".to_owned(),
                lease("10.244.7.0/24", "192.0.2.3", "vxlan"),
            ),
        ];
        let by_subnet = screen(&cfg, &own, candidates.clone());
        assert!(by_subnet.rejected.is_empty(), "{by_subnet:?}");
        let by_name = screen_others(&cfg, &own, candidates);
        let ids: Vec<&str> = by_name.accepted.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["node-c"]);
        assert_eq!(by_name.rejected.len(), 1, "{by_name:?}");
        assert_eq!(by_name.rejected[0].id, "node-b");
        assert_eq!(
            by_name.rejected[0].reason,
            PeerRejection::OverlapsOwn {
                subnet: "10.244.6.0/24".parse().unwrap()
            }
        );
    }
}
