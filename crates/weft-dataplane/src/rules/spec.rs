//! What the rules should say: a pure description built by the caller from
//! the configuration and the node's own lease, with no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_core::Family;

use super::RulesError;

/// Which kernel interface carries the rules. flannel picks nftables when
/// `EnableNFTables` is set in net-conf.json and iptables otherwise; weft does
/// the same so an existing node keeps the layout its operators know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RulesBackend {
    /// Tables `ip flannel-ipv4` / `ip6 flannel-ipv6`, written with `nft -f -`.
    Nftables,
    /// Chains `FLANNEL-POSTRTG` (nat) / `FLANNEL-FWD` (filter), written with
    /// `iptables-restore` / `ip6tables-restore`.
    Iptables,
}

impl RulesBackend {
    /// The backend not in use. At startup the agent removes what this one
    /// left behind (a node switching `EnableNFTables` must not keep two sets
    /// of masquerade rules).
    pub fn other(self) -> RulesBackend {
        match self {
            RulesBackend::Nftables => RulesBackend::Iptables,
            RulesBackend::Iptables => RulesBackend::Nftables,
        }
    }
}

/// One address family's inputs: the cluster network and this node's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRules {
    pub family: Family,
    /// The cluster network (`Network` / `IPv6Network` of net-conf.json).
    pub network: IpNet,
    /// This node's lease (`FLANNEL_SUBNET` without the host part).
    pub subnet: IpNet,
}

impl FamilyRules {
    /// Builds the rules of one family, taking the family from the network.
    pub fn new(network: IpNet, subnet: IpNet) -> FamilyRules {
        FamilyRules {
            family: Family::of_net(network),
            network,
            subnet,
        }
    }

    /// The network with host bits cleared: the kernel stores prefixes that
    /// way and reads them back that way, so rendering anything else would
    /// make every check report drift.
    pub(crate) fn network(&self) -> IpNet {
        self.network.trunc()
    }

    /// The lease with host bits cleared (see [`FamilyRules::network`]).
    pub(crate) fn subnet(&self) -> IpNet {
        self.subnet.trunc()
    }

    /// Multicast destinations are never masqueraded (flannel's layout).
    pub(crate) fn multicast(&self) -> IpNet {
        match self.family {
            Family::V4 => IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4)),
            Family::V6 => IpNet::V6(Ipv6Net::new_assert(
                Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
                8,
            )),
        }
    }
}

/// The whole desired rule set of a node.
///
/// Families not listed get no rules: whatever weft or flannel left for them
/// is removed by `apply`, so turning IPv6 off or `--ip-masq` off converges
/// like any other change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesSpec {
    pub families: Vec<FamilyRules>,
    /// `--ip-masq`: install `FLANNEL-POSTRTG` / chain `postrtg`.
    pub masquerade: bool,
    /// `MASQUERADE --random-fully` / `masquerade fully-random`; false for
    /// `--ip-masq-fully-random-disable`. Dropped with a warning where the
    /// tools or kernel lack it.
    pub fully_random: bool,
    /// `--iptables-forward-rules`: install `FLANNEL-FWD` / chain `forward`.
    pub forward: bool,
}

impl RulesSpec {
    /// The inputs for one family, if that family is configured.
    pub fn family(&self, family: Family) -> Option<&FamilyRules> {
        self.families.iter().find(|f| f.family == family)
    }

    /// Refuses a spec the renderers would turn into wrong rules: mixed
    /// families, a lease outside its network, a family listed twice.
    pub fn validate(&self) -> Result<(), RulesError> {
        for (i, fr) in self.families.iter().enumerate() {
            if Family::of_net(fr.network) != fr.family || Family::of_net(fr.subnet) != fr.family {
                return Err(RulesError::InvalidSpec(format!(
                    "{} rules were given network {} and subnet {}: both must be {} prefixes",
                    fr.family, fr.network, fr.subnet, fr.family
                )));
            }
            if !fr.network().contains(&fr.subnet()) {
                return Err(RulesError::InvalidSpec(format!(
                    "subnet {} is not inside network {}: the lease must come from the cluster network",
                    fr.subnet, fr.network
                )));
            }
            if self.families[..i].iter().any(|o| o.family == fr.family) {
                return Err(RulesError::InvalidSpec(format!(
                    "{} is listed twice: give one network and subnet per family",
                    fr.family
                )));
            }
        }
        Ok(())
    }

    /// The spec as it will really be installed, once the host's support for
    /// fully-random masquerade is known.
    pub(crate) fn effective(&self, fully_random_supported: bool) -> RulesSpec {
        RulesSpec {
            fully_random: self.fully_random && fully_random_supported,
            ..self.clone()
        }
    }
}
