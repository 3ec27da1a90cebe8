//! Reading and writing the flannel annotations of a Node. Pure functions:
//! the I/O lives in `publish.rs` and `watch.rs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::Node;
use tracing::warn;
use weft_core::lease::{
    Lease, LeaseAttrs, LeaseDecodeError, LeaseSubnets, MAX_LEASE_VALUE_BYTES, RawJson,
};
use weft_core::peer::PeerRejection;
use weft_core::prefix::{self, CidrParseError};

use super::keys::AnnotationKeys;

pub(crate) fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

pub(crate) fn annotations(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

/// A node's podCIDRs, one per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PodCidrs {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

/// `spec.podCIDRs`, else `spec.podCIDR`, as flannel reads them; `Ok(None)`
/// while the controller-manager has not assigned one yet.
pub(crate) fn pod_cidrs(node: &Node) -> Result<Option<PodCidrs>, String> {
    let spec = node.spec.as_ref();
    let list: Vec<&str> = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
        Some(l) if !l.is_empty() => l.iter().map(String::as_str).collect(),
        _ => spec
            .and_then(|s| s.pod_cidr.as_deref())
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect(),
    };
    if list.is_empty() {
        return Ok(None);
    }
    if list.len() > 2 {
        return Err(format!(
            "node {:?} pod cidrs should be IPv4/IPv6 only or dualstack",
            name(node)
        ));
    }
    let mut out = PodCidrs::default();
    for text in list {
        let net = prefix::parse_cidr(text).map_err(|e| {
            let shown = prefix::excerpt(text);
            match e {
                CidrParseError::LeadingZero { .. } => format!(
                    "podCIDR {shown} is not a CIDR: an IPv4 octet has a leading zero, \
                     which some tools read as octal (010 = 8)"
                ),
                _ => format!("podCIDR {shown} is not a CIDR"),
            }
        })?;
        let dup = match net.trunc() {
            IpNet::V4(n) => out.v4.replace(n).is_some(),
            IpNet::V6(n) => out.v6.replace(n).is_some(),
        };
        if dup {
            return Err(format!(
                "node {:?} pod cidrs should be IPv4/IPv6 only or dualstack",
                name(node)
            ));
        }
    }
    Ok(Some(out))
}

fn bad(detail: String) -> PeerRejection {
    PeerRejection::BadValue(LeaseDecodeError::Json(detail))
}

/// One annotation, refused when oversized (another node's input is hostile).
fn read<'a>(node: &'a Node, key: &str) -> Result<Option<&'a str>, PeerRejection> {
    match annotations(node).get(key) {
        Some(v) if v.len() > MAX_LEASE_VALUE_BYTES => {
            Err(PeerRejection::BadValue(LeaseDecodeError::TooLarge(v.len())))
        }
        Some(v) => Ok(Some(v.as_str())),
        None => Ok(None),
    }
}

fn parse_ip<T: std::str::FromStr>(
    key: &str,
    value: Option<&str>,
) -> Result<Option<T>, PeerRejection> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                bad(format!(
                    "annotation {key} = {v:?} is not an IP address of its family"
                ))
            })
        })
        .transpose()
}

fn raw(key: &str, value: Option<&str>) -> Result<Option<RawJson>, PeerRejection> {
    value
        .map(|v| RawJson::parse(v).map_err(|e| bad(format!("annotation {key} is not JSON: {e}"))))
        .transpose()
}

/// Whether the node says flannel (or weft) manages it.
pub(crate) fn is_managed(keys: &AnnotationKeys, node: &Node) -> bool {
    annotations(node)
        .get(&keys.kube_subnet_manager)
        .map(String::as_str)
        == Some("true")
}

/// A peer's lease, as flannel's `nodeToLease` builds it, but checked: a
/// bad address or JSON is a rejection with the annotation named, never a
/// lease. Families the cluster does not enable are left out.
pub(crate) fn peer_lease(
    keys: &AnnotationKeys,
    v4: bool,
    v6: bool,
    node: &Node,
) -> Result<Lease, PeerRejection> {
    let cidrs = pod_cidrs(node)
        .map_err(bad)?
        .ok_or(PeerRejection::NoSubnet)?;
    let public_ip: Option<Ipv4Addr> = if v4 {
        parse_ip(&keys.public_ip, read(node, &keys.public_ip)?)?
            .filter(|ip: &Ipv4Addr| !ip.is_unspecified())
    } else {
        None
    };
    let public_ipv6: Option<Ipv6Addr> = if v6 {
        parse_ip(&keys.public_ipv6, read(node, &keys.public_ipv6)?)?
    } else {
        None
    };
    Ok(Lease {
        subnets: LeaseSubnets {
            v4: cidrs.v4.filter(|_| v4),
            v6: cidrs.v6.filter(|_| v6),
        },
        attrs: LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_type: read(node, &keys.backend_type)?
                .unwrap_or_default()
                .to_owned(),
            backend_data: if v4 {
                raw(&keys.backend_data, read(node, &keys.backend_data)?)?
            } else {
                None
            },
            backend_v6_data: if v6 {
                raw(&keys.backend_v6_data, read(node, &keys.backend_v6_data)?)?
            } else {
                None
            },
        },
        expiration: None,
    })
}

/// What this node published before (our own annotations), best effort:
/// each unreadable part is left out.
pub(crate) fn published_attrs(keys: &AnnotationKeys, node: &Node) -> Option<LeaseAttrs> {
    let a = annotations(node);
    if ![
        &keys.backend_type,
        &keys.backend_data,
        &keys.backend_v6_data,
    ]
    .iter()
    .any(|k| a.contains_key(*k))
    {
        return None;
    }
    let get = |k: &str| a.get(k).map(String::as_str);
    Some(LeaseAttrs {
        public_ip: get(&keys.public_ip).and_then(|v| v.parse().ok()),
        public_ipv6: get(&keys.public_ipv6).and_then(|v| v.parse().ok()),
        backend_type: get(&keys.backend_type).unwrap_or_default().to_owned(),
        backend_data: get(&keys.backend_data).and_then(|v| RawJson::parse(v).ok()),
        backend_v6_data: get(&keys.backend_v6_data).and_then(|v| RawJson::parse(v).ok()),
    })
}

/// An operator-set address annotation; a malformed one is ignored with a
/// warning rather than published or trusted.
fn address<T: std::str::FromStr + Into<IpAddr>>(node: &Node, key: &str) -> Option<T> {
    let v = annotations(node).get(key)?;
    match v.parse::<T>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            warn!(node = name(node), annotation = key, value = %v, "ignoring the annotation: not an IP address of its family");
            None
        }
    }
}

/// `node-public-ip` / `node-public-ipv6`: override `--public-ip(v6)`.
pub(crate) fn stored_public_ips(
    keys: &AnnotationKeys,
    node: &Node,
) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    (
        address(node, &keys.node_public_ip),
        address(node, &keys.node_public_ipv6),
    )
}

/// The annotations this node should carry, as flannel's AcquireLease
/// writes them: `backend-type`; `backend-data` and `public-ip` unless the
/// backend is vxlan without IPv4 data (IPv6-only); `backend-v6-data` and
/// `public-ipv6` for vxlan with IPv6 data, wireguard with IPv6 data and
/// address, host-gw and extension with an IPv6 address; the public
/// addresses replaced by `public-ip(v6)-overwrite` when set (NAT).
pub(crate) fn desired(
    keys: &AnnotationKeys,
    attrs: &LeaseAttrs,
    node: &Node,
) -> BTreeMap<String, String> {
    let bt = attrs.backend_type.as_str();
    let data = |d: &Option<RawJson>| d.as_ref().map_or("null", RawJson::as_str).to_owned();
    let (bd, v6bd) = (data(&attrs.backend_data), data(&attrs.backend_v6_data));
    let mut out = BTreeMap::new();
    out.insert(keys.backend_type.clone(), bt.to_owned());
    if !(bt == "vxlan" && bd == "null") {
        out.insert(keys.backend_data.clone(), bd);
        let ip = address::<Ipv4Addr>(node, &keys.public_ip_overwrite)
            .or(attrs.public_ip)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        out.insert(keys.public_ip.clone(), ip.to_string());
    }
    let has_v6 = attrs.public_ipv6.is_some();
    let v6 = match bt {
        "vxlan" => v6bd != "null",
        "wireguard" => v6bd != "null" && has_v6,
        "host-gw" | "extension" => has_v6,
        _ => false,
    };
    if v6 {
        out.insert(keys.backend_v6_data.clone(), v6bd);
        if let Some(ip) =
            address::<Ipv6Addr>(node, &keys.public_ipv6_overwrite).or(attrs.public_ipv6)
        {
            out.insert(keys.public_ipv6.clone(), ip.to_string());
        }
    }
    out.insert(keys.kube_subnet_manager.clone(), "true".to_owned());
    out
}

/// The entries of `want` the node does not already carry.
pub(crate) fn missing(want: &BTreeMap<String, String>, node: &Node) -> BTreeMap<String, String> {
    let have = annotations(node);
    want.iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
