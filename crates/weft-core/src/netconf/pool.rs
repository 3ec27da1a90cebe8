//! One family's subnet pool: flannel's defaults, computed values and checks
//! (`CheckNetworkConfig` in flannel's `pkg/subnet/config.go`).
//!
//! Flannel runs these checks only when the config comes from etcd; in kube
//! mode SubnetLen/SubnetMin/SubnetMax are parsed and then ignored. weft runs
//! them whatever the store, on purpose: a config that flannel would refuse in
//! one mode is a mistake in every mode, and the allocator relies on a
//! well-formed pool.
//!
//! All arithmetic is on `u128` with checked operations, so every prefix of
//! both families, IPv6 `::/0` included, gives a pool or an error, never a
//! panic or a wrapped value.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{NetConfError, SubnetPool};
use crate::prefix::{self, Family};

/// What the file said about one family, before defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSpec {
    pub family: Family,
    /// The network as written (host bits possibly set).
    pub network: Option<IpNet>,
    /// `None` or `Some(0)`: compute it (flannel treats 0 as unset).
    pub subnet_len: Option<u64>,
    /// `None`: compute it. For IPv4, `0.0.0.0` is also "unset": flannel
    /// stores SubnetMin as a number whose zero value means absent.
    pub subnet_min: Option<IpAddr>,
    pub subnet_max: Option<IpAddr>,
}

/// The prefix length flannel gives each node when the network is big
/// enough: a /24 (254 pods) for IPv4, a /64 for IPv6.
fn default_subnet_len(family: Family) -> u8 {
    match family {
        Family::V4 => 24,
        Family::V6 => 64,
    }
}

/// Fills in SubnetLen, SubnetMin and SubnetMax and checks them, in the order
/// flannel does, so the first error reported is flannel's first error.
pub(crate) fn build(spec: PoolSpec) -> Result<SubnetPool, NetConfError> {
    let family = spec.family;
    let bits = family.bits();
    let Some(network) = spec.network.map(|n| n.trunc()) else {
        return Err(NetConfError::MissingNetwork { family });
    };
    let plen = network.prefix_len();

    let subnet_len: u8 = match spec.subnet_len.filter(|&l| l > 0) {
        Some(len) => {
            // Each node needs room for a tunnel and a bridge address (/30).
            if len > u64::from(bits - 2) {
                return Err(NetConfError::SubnetLenTooLong {
                    family,
                    subnet_len: len,
                });
            }
            // More than two subnets must fit: the first is never handed out.
            if len < u64::from(plen) + 2 {
                return Err(NetConfError::TooFewSubnets {
                    family,
                    network,
                    subnet_len: len,
                });
            }
            // len <= bits - 2 <= 126, so it fits a u8.
            u8::try_from(len).map_err(|_| NetConfError::SubnetLenTooLong {
                family,
                subnet_len: len,
            })?
        }
        None => {
            let default = default_subnet_len(family);
            if plen > bits - 4 {
                return Err(NetConfError::NetworkTooSmall { family, network });
            } else if plen <= default - 2 {
                default
            } else {
                plen + 2
            }
        }
    };

    // subnet_len >= 2 here, so a block always fits in a u128.
    let size = prefix::block_size(family, subnet_len).ok_or(NetConfError::TooFewSubnets {
        family,
        network,
        subnet_len: u64::from(subnet_len),
    })?;
    let (first, last) = prefix::bounds(network);

    let subnet_min = match spec.subnet_min.filter(|a| !is_unset_v4(*a)) {
        Some(addr) if network.contains(&addr) => addr,
        Some(addr) => {
            return Err(NetConfError::SubnetMinOutOfRange {
                family,
                addr,
                network,
            });
        }
        // Skip the first subnet: its network address would clash with the
        // network's own address.
        None => computed(family, network, first.checked_add(size))?,
    };
    let subnet_max = match spec.subnet_max.filter(|a| !is_unset_v4(*a)) {
        Some(addr) if network.contains(&addr) => addr,
        Some(addr) => {
            return Err(NetConfError::SubnetMaxOutOfRange {
                family,
                addr,
                network,
            });
        }
        // The last subnet of the network.
        None => computed(family, network, last.checked_sub(size - 1))?,
    };

    if !prefix::is_aligned(subnet_min, subnet_len) {
        return Err(NetConfError::SubnetMinUnaligned {
            family,
            addr: subnet_min,
            subnet_len,
        });
    }
    if !prefix::is_aligned(subnet_max, subnet_len) {
        return Err(NetConfError::SubnetMaxUnaligned {
            family,
            addr: subnet_max,
            subnet_len,
        });
    }
    if prefix::addr_to_u128(subnet_min) > prefix::addr_to_u128(subnet_max) {
        return Err(NetConfError::SubnetMinAboveMax {
            family,
            min: subnet_min,
            max: subnet_max,
        });
    }

    Ok(SubnetPool {
        network,
        subnet_len,
        subnet_min,
        subnet_max,
    })
}

fn is_unset_v4(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_unspecified())
}

/// A computed SubnetMin/SubnetMax. The network holds at least four subnets,
/// so the value is inside it; the checks only turn an impossible case into
/// an error instead of a wrong address.
fn computed(family: Family, network: IpNet, value: Option<u128>) -> Result<IpAddr, NetConfError> {
    let (first, last) = prefix::bounds(network);
    match value {
        Some(v) if first <= v && v <= last => Ok(prefix::u128_to_addr(family, v)),
        _ => Err(NetConfError::NetworkTooSmall { family, network }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(net: &str, len: Option<u64>, min: Option<&str>, max: Option<&str>) -> PoolSpec {
        let network: IpNet = net.parse().unwrap();
        PoolSpec {
            family: Family::of_net(network),
            network: Some(network),
            subnet_len: len,
            subnet_min: min.map(|m| m.parse().unwrap()),
            subnet_max: max.map(|m| m.parse().unwrap()),
        }
    }

    fn pool(net: &str, len: Option<u64>) -> (String, u8, String, String) {
        let p = build(spec(net, len, None, None)).unwrap();
        (
            p.network.to_string(),
            p.subnet_len,
            p.subnet_min.to_string(),
            p.subnet_max.to_string(),
        )
    }

    #[test]
    fn ipv4_defaults() {
        // (network as given, subnet length) → (network, subnet length, SubnetMin, SubnetMax)
        let cases = [
            (
                "10.244.1.5/16",
                None,
                ("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0"),
            ),
            (
                "10.0.0.0/22",
                None,
                ("10.0.0.0/22", 24, "10.0.1.0", "10.0.3.0"),
            ),
            (
                "10.0.0.0/23",
                None,
                ("10.0.0.0/23", 25, "10.0.0.128", "10.0.1.128"),
            ),
            (
                "10.0.0.0/28",
                None,
                ("10.0.0.0/28", 30, "10.0.0.4", "10.0.0.12"),
            ),
            (
                "0.0.0.0/0",
                None,
                ("0.0.0.0/0", 24, "0.0.1.0", "255.255.255.0"),
            ),
            (
                "255.255.255.0/24",
                Some(26),
                ("255.255.255.0/24", 26, "255.255.255.64", "255.255.255.192"),
            ),
        ];
        for (net, len, (network, subnet_len, min, max)) in cases {
            assert_eq!(
                pool(net, len),
                (
                    network.to_owned(),
                    subnet_len,
                    min.to_owned(),
                    max.to_owned()
                )
            );
        }
    }

    #[test]
    fn ipv6_defaults_including_the_whole_space() {
        assert_eq!(pool("::/0", None).1, 64);
        assert_eq!(pool("::/0", None).2, "0:0:0:1::");
        assert_eq!(pool("::/0", None).3, "ffff:ffff:ffff:ffff::");
        assert_eq!(pool("::/0", Some(2)).3, "c000::");
        assert_eq!(
            pool("ffff::/16", Some(126)).3,
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc"
        );
        assert_eq!(pool("fd00::/124", None).2, "fd00::4");
    }

    #[test]
    fn ipv6_slash_0_with_tiny_subnet_len_is_an_error_not_a_panic() {
        assert!(matches!(
            build(spec("::/0", Some(1), None, None)),
            Err(NetConfError::TooFewSubnets { .. })
        ));
    }

    #[test]
    fn zero_means_unset() {
        let p = build(spec(
            "10.244.0.0/16",
            Some(0),
            Some("0.0.0.0"),
            Some("0.0.0.0"),
        ))
        .unwrap();
        assert_eq!(p.subnet_len, 24);
        assert_eq!(p.subnet_min.to_string(), "10.244.1.0");
        assert_eq!(p.subnet_max.to_string(), "10.244.255.0");
    }

    #[test]
    fn min_above_max_is_refused() {
        let err = build(spec(
            "10.244.0.0/16",
            None,
            Some("10.244.9.0"),
            Some("10.244.2.0"),
        ));
        assert!(matches!(err, Err(NetConfError::SubnetMinAboveMax { .. })));
    }

    proptest::proptest! {
        /// Any prefix, any SubnetLen, any bounds: a pool that keeps the
        /// allocator's invariants, or an error; never a panic.
        #[test]
        fn never_panics_and_pools_are_sound(
            v6 in proptest::bool::ANY,
            addr in proptest::num::u128::ANY,
            plen in 0u8..=128,
            len in proptest::option::of(0u64..=140),
            min in proptest::option::of(proptest::num::u128::ANY),
            max in proptest::option::of(proptest::num::u128::ANY),
        ) {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let plen = plen.min(family.bits());
            let net = IpNet::new(prefix::u128_to_addr(family, addr), plen).unwrap();
            let s = PoolSpec {
                family,
                network: Some(net),
                subnet_len: len,
                subnet_min: min.map(|m| prefix::u128_to_addr(family, m)),
                subnet_max: max.map(|m| prefix::u128_to_addr(family, m)),
            };
            if let Ok(p) = build(s) {
                proptest::prop_assert!(p.network.contains(&p.subnet_min));
                proptest::prop_assert!(p.network.contains(&p.subnet_max));
                proptest::prop_assert!(p.subnet_len >= p.network.prefix_len() + 2);
                proptest::prop_assert!(p.subnet_len <= family.bits() - 2);
                let sub = IpNet::new(p.subnet_min, p.subnet_len).unwrap();
                proptest::prop_assert!(p.holds_subnet(sub));
                let sub = IpNet::new(p.subnet_max, p.subnet_len).unwrap();
                proptest::prop_assert!(p.holds_subnet(sub));
            }
        }
    }
}
