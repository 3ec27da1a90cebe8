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

/// Why [`parse_cidr`] refused a string. `text` is the input quoted and cut
/// to 64 characters, so a message never carries control characters or
/// unbounded input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrParseError {
    /// No `/`: an address alone, or not a prefix at all.
    #[error(
        "invalid CIDR {text}: no prefix length; write an address, '/' and a prefix length, such as 10.244.0.0/16 or fd00:10:244::/56"
    )]
    NoPrefixLength { text: String },

    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error(
        "invalid CIDR {text}: the part before '/' is not an IP address; write one such as 10.244.0.0 or fd00:10:244::"
    )]
    BadAddress { text: String },

    /// An IPv4 octet written with a leading zero (`010`), which some tools
    /// read as octal (8) and others as decimal (10).
    #[error(
        "invalid CIDR {text}: an IPv4 octet has a leading zero, which some tools read as octal (010 = 8); write each octet without leading zeros"
    )]
    LeadingZero { text: String },

    /// The part after `/` is not a decimal prefix length within the
    /// family's width.
    #[error("invalid CIDR {text}: the prefix length must be a decimal number from 0 to {max}")]
    BadPrefixLength { text: String, max: u8 },
}

/// Parses `address/length` strictly, as Go's `net.ParseCIDR` (and so
/// flannel) does: the address by `std::net` (no leading zeros in IPv4
/// octets, no zone), the length as ASCII decimal digits only (no sign, no
/// space) no larger than the family's width. The host bits are kept, as
/// `ipnet`'s parser keeps them; mask with [`IpNet::trunc`] where needed.
///
/// Use this for every CIDR that comes from input, never `str::parse` into
/// an `ipnet` type: `ipnet`'s own parser reads `010.244.0.0/16` as
/// `10.244.0.0/16`, which Go has refused since 1.17.
pub fn parse_cidr(text: &str) -> Result<IpNet, CidrParseError> {
    let shown = || excerpt(text);
    let Some((addr_text, len_text)) = text.split_once('/') else {
        return Err(CidrParseError::NoPrefixLength { text: shown() });
    };
    let addr: IpAddr = match addr_text.parse() {
        Ok(a) => a,
        Err(_) if has_leading_zero_octet(addr_text) => {
            return Err(CidrParseError::LeadingZero { text: shown() });
        }
        Err(_) => return Err(CidrParseError::BadAddress { text: shown() }),
    };
    let max = Family::of(addr).bits();
    let bad_len = || CidrParseError::BadPrefixLength { text: shown(), max };
    if len_text.is_empty() {
        return Err(bad_len());
    }
    // Leading zeros are harmless here ("/016" can only mean 16) and Go
    // accepts them; the running value is checked at each digit, so no
    // length of input can overflow.
    let mut len: u8 = 0;
    for b in len_text.bytes() {
        if !b.is_ascii_digit() {
            return Err(bad_len());
        }
        len = len
            .checked_mul(10)
            .and_then(|l| l.checked_add(b - b'0'))
            .filter(|l| *l <= max)
            .ok_or_else(bad_len)?;
    }
    IpNet::new(addr, len).map_err(|_| bad_len())
}

/// True when `addr` ends in a dotted quad (an IPv4 address, or the IPv4
/// tail of an IPv6 one) with an octet of two or more digits starting at
/// `0`.
fn has_leading_zero_octet(addr: &str) -> bool {
    let quad = addr.rsplit(':').next().unwrap_or(addr);
    quad.contains('.')
        && quad
            .split('.')
            .any(|o| o.len() > 1 && o.starts_with('0') && o.bytes().all(|b| b.is_ascii_digit()))
}

/// `text` quoted with escapes, cut to 64 characters, for a message.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    let quoted = format!("{text:?}");
    match quoted.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &quoted[..cut]),
        None => quoted,
    }
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
    fn parse_cidr_reads_what_go_reads() {
        for (text, want) in [
            ("10.244.0.0/16", "10.244.0.0/16"),
            ("10.244.1.7/24", "10.244.1.7/24"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("255.255.255.255/32", "255.255.255.255/32"),
            ("fd00:10:244::/56", "fd00:10:244::/56"),
            ("::/0", "::/0"),
            ("::ffff:10.244.0.0/120", "::ffff:10.244.0.0/120"),
            ("2001:DB8::/128", "2001:db8::/128"),
            // Go's dtoi takes leading zeros in the length; they are not
            // ambiguous there.
            ("10.244.0.0/016", "10.244.0.0/16"),
            ("fd00::/0064", "fd00::/64"),
        ] {
            assert_eq!(parse_cidr(text).unwrap().to_string(), want, "{text}");
        }
    }

    #[test]
    fn parse_cidr_refuses_what_go_refuses() {
        use CidrParseError as E;
        let kind = |text: &str| match parse_cidr(text) {
            Ok(n) => panic!("{text:?} accepted as {n}"),
            Err(E::NoPrefixLength { .. }) => "no-len",
            Err(E::BadAddress { .. }) => "address",
            Err(E::LeadingZero { .. }) => "zero",
            Err(E::BadPrefixLength { .. }) => "len",
        };
        for (text, want) in [
            ("10.244.0.0", "no-len"),
            ("", "no-len"),
            ("010.244.0.0/16", "zero"),
            ("10.244.00.0/16", "zero"),
            ("10.244.0.01/32", "zero"),
            ("::ffff:010.244.0.0/120", "zero"),
            ("0x0a.244.0.0/16", "address"),
            ("10.244.0/16", "address"),
            ("10.244.0.256/16", "address"),
            (" 10.244.0.0/16", "address"),
            ("fe80::1%eth0/64", "address"),
            ("10.244.0.0/16/8", "len"),
            ("10.244.0.0/", "len"),
            ("10.244.0.0/+16", "len"),
            ("10.244.0.0/-1", "len"),
            ("10.244.0.0/16 ", "len"),
            ("10.244.0.0/33", "len"),
            ("fd00::/129", "len"),
            ("10.244.0.0/99999999999999999999999", "len"),
            ("10.244.0.0/１６", "len"),
        ] {
            assert_eq!(kind(text), want, "{text:?}");
        }
    }

    #[test]
    fn parse_cidr_errors_quote_and_cut_the_input() {
        let e = parse_cidr(&format!("\u{1b}[2J{}/16", "1".repeat(500))).unwrap_err();
        let shown = e.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.chars().count() < 300, "{shown}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
        let e = parse_cidr("010.244.0.0/16").unwrap_err().to_string();
        assert!(
            e.contains("\"010.244.0.0/16\"") && e.contains("leading zero"),
            "{e}"
        );
    }

    #[test]
    fn u128_round_trip() {
        for s in ["0.0.0.0", "255.255.255.255", "::", "ffff::1", "10.1.2.3"] {
            let a: IpAddr = s.parse().unwrap();
            assert_eq!(u128_to_addr(Family::of(a), addr_to_u128(a)), a);
        }
    }
}
