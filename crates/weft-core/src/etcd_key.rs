//! flannel's etcd layout: `<prefix>/config` holds net-conf.json and
//! `<prefix>/subnets/<key>` one lease per node, where the key is made from
//! the subnets: `10.244.1.0-24`, or `10.244.1.0-24&fd00:10:244:1::-64` when
//! the node also holds an IPv6 subnet.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::lease::LeaseSubnets;

/// flannel's default `--etcd-prefix`.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";

/// Why a key under `<prefix>/subnets/` is not a lease key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?} is not a subnet key of the form 10.244.1.0-24[&fd00::-64]: {why}")]
pub struct SubnetKeyError {
    pub key: String,
    pub why: &'static str,
}

/// Joins like Go's `path.Join`, which flannel uses: doubled and trailing
/// slashes in the prefix do not change the key.
fn join(prefix: &str, rest: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    let mut out = String::with_capacity(trimmed.len() + rest.len() + 1);
    let mut last_slash = false;
    for c in trimmed.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        out.push(c);
    }
    out.push('/');
    out.push_str(rest);
    out
}

/// `<prefix>/config`.
pub fn config_key(prefix: &str) -> String {
    join(prefix, "config")
}

/// `<prefix>/subnets/`, the range every lease lives in.
pub fn subnets_dir(prefix: &str) -> String {
    join(prefix, "subnets/")
}

/// `<prefix>/subnets/<key>` for a lease.
pub fn lease_key(prefix: &str, subnets: &LeaseSubnets) -> String {
    join(prefix, &format!("subnets/{}", subnet_key(subnets)))
}

/// The last path element flannel derives from the subnets. An IPv6-only
/// lease gets the IPv4 part `0.0.0.0-0`, exactly as flannel writes it.
pub fn subnet_key(subnets: &LeaseSubnets) -> String {
    let v4 = match subnets.v4 {
        Some(n) => format!("{}-{}", n.network(), n.prefix_len()),
        None => "0.0.0.0-0".to_owned(),
    };
    match subnets.v6 {
        Some(n) => format!("{v4}&{}-{}", n.network(), n.prefix_len()),
        None => v4,
    }
}

/// Parses the last path element of a lease key. Stricter than flannel's
/// regular expression: the address must be a network address for its
/// prefix length, so `10.244.1.5-24` is refused rather than misread.
pub fn parse_subnet_key(key: &str) -> Result<LeaseSubnets, SubnetKeyError> {
    let err = |why| SubnetKeyError {
        key: key.chars().take(128).collect(),
        why,
    };
    let (v4_part, v6_part) = match key.split_once('&') {
        Some((a, b)) => (a, Some(b)),
        None => (key, None),
    };
    let (addr, len) = split_len(v4_part).ok_or_else(|| err("missing -<prefix length>"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| err("bad IPv4 address"))?;
    let v4 = if addr.is_unspecified() && len == 0 && v6_part.is_some() {
        None
    } else {
        let net = Ipv4Net::new(addr, len).map_err(|_| err("IPv4 prefix length above 32"))?;
        if net.network() != addr {
            return Err(err("IPv4 address has host bits set"));
        }
        Some(net)
    };
    let v6 = match v6_part {
        None => None,
        Some(part) => {
            let (addr, len) =
                split_len(part).ok_or_else(|| err("missing IPv6 -<prefix length>"))?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| err("bad IPv6 address"))?;
            let net = Ipv6Net::new(addr, len).map_err(|_| err("IPv6 prefix length above 128"))?;
            if net.network() != addr {
                return Err(err("IPv6 address has host bits set"));
            }
            Some(net)
        }
    };
    Ok(LeaseSubnets { v4, v6 })
}

fn split_len(part: &str) -> Option<(&str, u8)> {
    let (addr, len) = part.rsplit_once('-')?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((addr, len.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnets(v4: Option<&str>, v6: Option<&str>) -> LeaseSubnets {
        LeaseSubnets {
            v4: v4.map(|s| s.parse().unwrap()),
            v6: v6.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn golden_keys() {
        let cases = [
            (subnets(Some("10.244.1.0/24"), None), "10.244.1.0-24"),
            (
                subnets(Some("10.5.34.0/24"), Some("fc00::/64")),
                "10.5.34.0-24&fc00::-64",
            ),
            (
                subnets(None, Some("fd00:10:244:1::/64")),
                "0.0.0.0-0&fd00:10:244:1::-64",
            ),
        ];
        for (sn, key) in cases {
            assert_eq!(subnet_key(&sn), key);
            assert_eq!(parse_subnet_key(key), Ok(sn));
        }
    }

    #[test]
    fn full_keys_follow_path_join() {
        let sn = subnets(Some("10.244.1.0/24"), None);
        assert_eq!(
            lease_key(DEFAULT_PREFIX, &sn),
            "/coreos.com/network/subnets/10.244.1.0-24"
        );
        assert_eq!(
            lease_key("/coreos.com//network/", &sn),
            "/coreos.com/network/subnets/10.244.1.0-24"
        );
        assert_eq!(config_key(DEFAULT_PREFIX), "/coreos.com/network/config");
        assert_eq!(subnets_dir("/x/"), "/x/subnets/");
    }

    #[test]
    fn refuses_malformed_keys() {
        for bad in [
            "",
            "10.244.1.0",
            "10.244.1.0-",
            "10.244.1.0-33",
            "10.244.1.5-24",
            "10.244.1.0-24&",
            "10.244.1.0-24&fc00::",
            "10.244.1.0-24&fc00::1-64",
            "10.244.1.0-24&fc00::-129",
            "010.244.1.0-24",
            "10.244.1.0-+24",
            "a.b.c.d-24",
            "10.244.1.0-0024",
        ] {
            assert!(parse_subnet_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
