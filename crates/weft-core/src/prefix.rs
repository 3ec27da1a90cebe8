//! Prefix arithmetic shared by both address families.
//!
//! Addresses are mapped onto `u128` so that one piece of code walks IPv4 and
//! IPv6 subnet pools alike; nothing below is IPv4-only by construction.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

/// An IP address family. Flannel runs the two families side by side with
/// separate networks, subnets and devices, so most configuration is held per
/// family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Family {
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

impl Family {
    /// Both families, IPv4 first (the order flannel writes them in).
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// Width of an address of this family in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The family an address belongs to.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The family a prefix belongs to.
    pub fn of_net(net: IpNet) -> Family {
        Family::of(net.addr())
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The address as an unsigned integer (IPv4 in the low 32 bits).
pub fn addr_to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`addr_to_u128`]; IPv4 values are truncated to 32 bits.
pub fn u128_to_addr(family: Family, value: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// Number of addresses in a prefix of length `len`, or `None` when it does
/// not fit in a `u128` (only an IPv6 `/0`).
pub fn block_size(family: Family, len: u8) -> Option<u128> {
    let host_bits = u32::from(family.bits().checked_sub(len)?);
    1u128.checked_shl(host_bits).filter(|_| host_bits < 128)
}

/// First and last address of a prefix as integers.
pub fn bounds(net: IpNet) -> (u128, u128) {
    let net = net.trunc();
    (addr_to_u128(net.network()), addr_to_u128(net.broadcast()))
}

/// True when `addr` starts a block of length `len` (its host bits are zero).
pub fn is_aligned(addr: IpAddr, len: u8) -> bool {
    match IpNet::new(addr, len) {
        Ok(net) => net.trunc().addr() == addr,
        Err(_) => false,
    }
}

/// True when the two prefixes share at least one address.
pub fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// The address right after the network address, as flannel writes it in
/// `FLANNEL_SUBNET` and as the bridge gateway: `10.244.1.0/24` → `10.244.1.1`.
pub fn first_host(net: IpNet) -> IpAddr {
    let (start, _) = bounds(net);
    u128_to_addr(Family::of_net(net), start.wrapping_add(1))
}

/// `net` with its host bits cleared, as Go's `net.ParseCIDR` returns it.
pub fn masked(net: IpNet) -> IpNet {
    net.trunc()
}

/// Narrows a prefix known to be IPv4.
pub fn as_v4(net: IpNet) -> Option<Ipv4Net> {
    match net {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

/// Narrows a prefix known to be IPv6.
pub fn as_v6(net: IpNet) -> Option<Ipv6Net> {
    match net {
        IpNet::V6(n) => Some(n),
        IpNet::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn first_host_is_network_plus_one() {
        assert_eq!(first_host(net("10.244.1.0/24")).to_string(), "10.244.1.1");
        assert_eq!(
            first_host(net("2001:cafe:42:1::/64")).to_string(),
            "2001:cafe:42:1::1"
        );
    }

    #[test]
    fn block_sizes_cover_both_families() {
        assert_eq!(block_size(Family::V4, 24), Some(256));
        assert_eq!(block_size(Family::V4, 0), Some(1 << 32));
        assert_eq!(block_size(Family::V6, 64), Some(1 << 64));
        assert_eq!(block_size(Family::V6, 1), Some(1 << 127));
        assert_eq!(block_size(Family::V6, 0), None);
        assert_eq!(block_size(Family::V4, 33), None);
    }

    #[test]
    fn alignment_and_overlap() {
        assert!(is_aligned("10.244.2.0".parse().unwrap(), 24));
        assert!(!is_aligned("10.244.2.1".parse().unwrap(), 24));
        assert!(overlaps(net("10.244.0.0/16"), net("10.244.3.0/24")));
        assert!(!overlaps(net("10.244.2.0/24"), net("10.244.3.0/24")));
        assert!(!overlaps(net("10.244.0.0/16"), net("fd00::/8")));
    }

    #[test]
    fn u128_round_trip() {
        for s in ["0.0.0.0", "255.255.255.255", "::", "ffff::1", "10.1.2.3"] {
            let a: IpAddr = s.parse().unwrap();
            assert_eq!(u128_to_addr(Family::of(a), addr_to_u128(a)), a);
        }
    }
}
