//! `parse`: net-conf.json text to a validated [`NetConfig`].
//!
//! The steps follow flannel's, so that when a file has several problems the
//! one reported first is the one flannel reports:
//! 1. decode the top level (`ParseConfig`): JSON types of every field, CIDR
//!    and address syntax, `Backend` being an object;
//! 2. check and complete each enabled family (`CheckNetworkConfig`), IPv4
//!    first;
//! 3. resolve the backend type and its options (`GetBackend`, then the
//!    backend's own decoding).
//!
//! Deliberate differences from flannel, each documented where it happens: a
//! missing `Backend` means vxlan, not udp; step 2 runs whatever the store
//! (flannel runs it in etcd mode only); udp and extension are refused; and
//! weft adds range checks flannel leaves to the kernel.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::value::RawValue;

use super::NetConfError;
use super::NetConfig;
use super::backend_parse::{self, Families};
use super::json_ci::{self, CiObject, bool_of, integer_of, string_of};
use super::pool::{self, PoolSpec};
use crate::prefix::{self, CidrParseError, Family};

/// Top-level keys flannel's `Config` decodes (plus nothing of weft's own).
const TOP_LEVEL_KEYS: &[&str] = &[
    "Network",
    "IPv6Network",
    "EnableIPv4",
    "EnableIPv6",
    "EnableNFTables",
    "SubnetLen",
    "SubnetMin",
    "SubnetMax",
    "IPv6SubnetLen",
    "IPv6SubnetMin",
    "IPv6SubnetMax",
    "Backend",
];

/// Parses and validates a net-conf.json document.
///
/// Keys are matched case-insensitively as Go's `encoding/json` does (a later
/// duplicate wins; `null` changes nothing), defaults are flannel's, and every
/// error's `Display` is flannel's message where flannel has one.
/// Validation runs whatever store the config came from, unlike flannel,
/// which validates only in etcd mode. Unknown keys are not errors (flannel
/// ignores them) but are returned in [`NetConfig::unknown_keys`] so tools
/// can warn about typos.
pub fn parse(json: &str) -> Result<NetConfig, NetConfError> {
    let root = CiObject::parse_document(json)?;

    let enable_ipv4 = flag(&root, "EnableIPv4", true)?;
    let enable_ipv6 = flag(&root, "EnableIPv6", false)?;
    let enable_nftables = flag(&root, "EnableNFTables", false)?;
    let v4 = pool_spec(&root, Family::V4)?;
    let v6 = pool_spec(&root, Family::V6)?;
    let backend_obj = backend_parse::object(root.read("Backend", Ok::<_, NetConfError>)?)?;

    if !enable_ipv4 && !enable_ipv6 {
        return Err(NetConfError::NoFamilyEnabled);
    }
    let ipv4 = enable_ipv4.then(|| pool::build(v4)).transpose()?;
    let ipv6 = enable_ipv6.then(|| pool::build(v6)).transpose()?;

    let mut unknown_keys = root.unknown_keys(TOP_LEVEL_KEYS);
    let families = Families {
        ipv4: enable_ipv4,
        ipv6: enable_ipv6,
    };
    let backend = backend_parse::parse(backend_obj.as_ref(), families, &mut unknown_keys)?;

    Ok(NetConfig {
        enable_ipv4,
        enable_ipv6,
        enable_nftables,
        ipv4,
        ipv6,
        backend,
        unknown_keys,
    })
}

fn flag(root: &CiObject, name: &str, default: bool) -> Result<bool, NetConfError> {
    Ok(root.read(name, |r| bool_of(name, r))?.unwrap_or(default))
}

/// Field names of one family.
struct Names {
    network: &'static str,
    subnet_len: &'static str,
    subnet_min: &'static str,
    subnet_max: &'static str,
    example_net: &'static str,
    example_addr: &'static str,
}

fn names(family: Family) -> Names {
    match family {
        Family::V4 => Names {
            network: "Network",
            subnet_len: "SubnetLen",
            subnet_min: "SubnetMin",
            subnet_max: "SubnetMax",
            example_net: "10.244.0.0/16",
            example_addr: "10.244.1.0",
        },
        Family::V6 => Names {
            network: "IPv6Network",
            subnet_len: "IPv6SubnetLen",
            subnet_min: "IPv6SubnetMin",
            subnet_max: "IPv6SubnetMax",
            example_net: "fd00:10:244::/56",
            example_addr: "fd00:10:244:1::",
        },
    }
}

/// Reads one family's fields, checking types and syntax only; the values
/// are checked against each other in `pool::build`, and only when the
/// family is enabled (as flannel does), but a field of the wrong type is an
/// error either way (as Go's decoder makes it).
fn pool_spec(root: &CiObject, family: Family) -> Result<PoolSpec, NetConfError> {
    let n = names(family);
    let network = root.read(n.network, |r| cidr(family, &n, r))?;
    let len_expected = format!(
        "a prefix length (a whole number such as {})",
        if family == Family::V4 { 24 } else { 64 }
    );
    let subnet_len = root.read(n.subnet_len, |r| {
        let v = integer_of(n.subnet_len, &len_expected, r)?;
        u64::try_from(v).map_err(|_| json_ci::invalid(n.subnet_len, &len_expected, r, false))
    })?;
    let subnet_min = root.read(n.subnet_min, |r| address(family, n.subnet_min, &n, r))?;
    let subnet_max = root.read(n.subnet_max, |r| address(family, n.subnet_max, &n, r))?;
    Ok(PoolSpec {
        family,
        network,
        subnet_len,
        subnet_min,
        subnet_max,
    })
}

/// A CIDR string of `family`, as Go's `net.ParseCIDR` reads it (masking
/// happens in `pool::build`).
fn cidr(family: Family, n: &Names, raw: &RawValue) -> Result<IpNet, NetConfError> {
    let expected = format!("an {family} CIDR string such as \"{}\"", n.example_net);
    let text = string_of(n.network, &expected, raw, false)?;
    let err = |detail: String| NetConfError::InvalidCidr {
        field: n.network,
        family,
        detail,
    };
    match prefix::parse_cidr(&text) {
        Ok(net) if Family::of_net(net) == family => Ok(net),
        Ok(_) => Err(err(match family {
            Family::V4 => format!(
                "{text:?} is an IPv6 prefix; put it in IPv6Network (and set \"EnableIPv6\": true)"
            ),
            Family::V6 => format!("{text:?} is an IPv4 prefix; put it in Network"),
        })),
        Err(CidrParseError::LeadingZero { .. }) => Err(err(format!(
            "{} has an IPv4 octet with a leading zero, which some tools read as octal \
             (010 = 8): write each octet without leading zeros, like \"{}\"",
            json_ci::quoted(&text),
            n.example_net
        ))),
        Err(_) if text.parse::<IpAddr>().is_ok() => Err(err(format!(
            "{text:?} has no prefix length; write it like \"{}\"",
            n.example_net
        ))),
        Err(_) => Err(err(format!(
            "{} is not a prefix such as \"{}\"",
            json_ci::quoted(&text),
            n.example_net
        ))),
    }
}

/// A plain address of `family` (SubnetMin/SubnetMax).
fn address(family: Family, field: &str, n: &Names, raw: &RawValue) -> Result<IpAddr, NetConfError> {
    let expected = format!("an {family} address such as \"{}\"", n.example_addr);
    let text = string_of(field, &expected, raw, false)?;
    match text.parse::<IpAddr>() {
        Ok(addr) if Family::of(addr) == family => Ok(addr),
        _ => Err(json_ci::invalid(field, &expected, raw, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netconf::{BackendConfig, WireguardMode};

    #[test]
    fn typed_result_of_a_dual_stack_wireguard_config() {
        let cfg = parse(
            r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56",
                "Backend":{"Type":"wireguard-native","PSK":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","Mode":"auto"}}"#,
        )
        .unwrap();
        let v4 = cfg.pool(Family::V4).unwrap();
        assert!(v4.holds_subnet("10.244.7.0/24".parse().unwrap()));
        assert!(!v4.holds_subnet("10.244.0.0/24".parse().unwrap()));
        assert_eq!(cfg.pool(Family::V6).unwrap().subnet_len, 64);
        assert_eq!(cfg.pools().count(), 2);
        let BackendConfig::Wireguard(wg) = &cfg.backend else {
            panic!("{:?}", cfg.backend);
        };
        assert_eq!(cfg.backend.type_name(), "wireguard");
        assert_eq!(wg.mode, WireguardMode::Auto);
        let key = wg.psk.as_ref().unwrap().key();
        assert_eq!(key.0[..4], [0, 1, 2, 3]);
        assert!(cfg.unknown_keys.is_empty());
    }

    #[test]
    fn disabled_family_has_no_pool() {
        let cfg =
            parse(r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56"}"#).unwrap();
        assert!(cfg.pool(Family::V4).is_none());
        assert_eq!(cfg.pools().count(), 1);
        assert_eq!(cfg.backend, BackendConfig::default());
    }

    #[test]
    fn none_publishes_an_empty_backend_type() {
        let cfg = parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"ALLOC"}}"#).unwrap();
        assert_eq!(cfg.backend, BackendConfig::None);
        assert_eq!(cfg.backend.type_name(), "");
    }
}
