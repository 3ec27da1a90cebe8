//! Choosing the external interface and the public addresses published to
//! peers, exactly as flanneld does (flannel-compat §1):
//!
//! 1. `--iface` values in order (an IP: the interface holding it; else an
//!    interface name), then each `--iface-regex` (matched against the
//!    interfaces' addresses first, then their names), then
//!    `--iface-can-reach` (the interface of the route to that address);
//! 2. with none of those: the interface holding `--public-ip` (or
//!    `--public-ipv6`), else the one of the default route — in dual-stack
//!    both default routes must use the same interface.
//!
//! The published address is `--public-ip(v6)` when given (a NAT'd or
//! multi-cloud node, K3s's `--flannel-external-ip`), else the interface's.
//!
//! Here rather than in the agent because `weft check` runs the very same
//! choice to tell an operator which interface weftd will take.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use weft_core::Family;
use weft_core::netconf::NetConfig;

use crate::netlink::{AddrInfo, LinkInfo, Netlink, NetlinkError, Scope};

/// What the operator said about the interface: flanneld's `--iface`,
/// `--iface-regex`, `--iface-can-reach`, `--public-ip`, `--public-ipv6`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceChoice {
    pub iface: Vec<String>,
    pub iface_regex: Vec<String>,
    pub iface_can_reach: Option<IpAddr>,
    pub public_ip: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
}

/// Why no external interface could be chosen. The messages are flanneld's
/// where operators search for them, with the fix added.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("--iface-regex {pattern:?} is not a valid regular expression: {source}")]
    InvalidRegex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error(
        "Failed to find interface to use that matches the interfaces and/or regexes provided (interfaces here: {interfaces})"
    )]
    NoMatch { interfaces: String },
    #[error(
        "Failed to find any valid interface to use: no interface holds {flag} {ip}; choose the interface with --iface (the published address may differ from it)"
    )]
    PublicIpNotHeld { flag: &'static str, ip: IpAddr },
    #[error(
        "v6 default route interface {v6} must be the same with v4 default route interface {v4}: in dual-stack both families use one interface; choose it with --iface"
    )]
    DefaultRoutesDiffer { v4: u32, v6: u32 },
    #[error(
        "Failed to find any valid interface to use: no default route; name the interface peers reach this node on with --iface, or its address with --public-ip"
    )]
    NoDefaultRoute,
    #[error("interface {0} disappeared while it was being chosen")]
    Vanished(u32),
    #[error("interface {0} reports MTU 0")]
    ZeroMtu(String),
    #[error("interface {iface} has no {what} address: set {flag}")]
    NoAddress {
        iface: String,
        what: &'static str,
        flag: &'static str,
    },
    #[error("reading the interfaces: {0}")]
    Netlink(#[from] NetlinkError),
}

impl ExternalError {
    /// Whether trying again later may succeed (an interface or route that
    /// is not up yet, the kernel busy), as opposed to a configuration the
    /// operator must change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExternalError::Vanished(_) | ExternalError::NoDefaultRoute | ExternalError::Netlink(_)
        )
    }
}

type Result<T> = std::result::Result<T, ExternalError>;

/// The underlay interface and the addresses this node publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInterface {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    /// The interface's own addresses (tunnel sources).
    pub iface_addr: Option<Ipv4Addr>,
    pub iface_addr_v6: Option<Ipv6Addr>,
    /// What peers are told to send to: `--public-ip(v6)` or the above.
    pub ext_addr: Option<Ipv4Addr>,
    pub ext_addr_v6: Option<Ipv6Addr>,
}

/// The best address of a family on an interface: global before link-local,
/// configured (permanent) before autoconfigured, as flanneld sorts them.
fn best_addr(addrs: &[AddrInfo], family: Family) -> Option<IpAddr> {
    let mut candidates: Vec<&AddrInfo> = usable(addrs, family).collect();
    candidates.sort_by_key(|a| (a.scope != Scope::Universe, !a.permanent));
    candidates.first().map(|a| a.prefix.addr())
}

/// The addresses [`detect`] would take from an interface holding `addrs`:
/// what the agent re-reads to notice that the interface was renumbered.
pub fn interface_addresses(addrs: &[AddrInfo]) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let v4 = match best_addr(addrs, Family::V4) {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    let v6 = match best_addr(addrs, Family::V6) {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    };
    (v4, v6)
}

fn usable(addrs: &[AddrInfo], family: Family) -> impl Iterator<Item = &AddrInfo> {
    addrs
        .iter()
        .filter(move |a| Family::of_net(a.prefix) == family)
        .filter(|a| match a.prefix.addr() {
            IpAddr::V4(v4) => !v4.is_loopback(),
            IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
        })
}

/// The families whose addresses identify an interface for this config.
fn families(cfg: &NetConfig) -> Vec<Family> {
    Family::ALL
        .into_iter()
        .filter(|f| cfg.pool(*f).is_some())
        .collect()
}

struct Links {
    links: Vec<LinkInfo>,
    addrs: Vec<Vec<AddrInfo>>,
}

impl Links {
    async fn read(nl: &Netlink) -> Result<Links> {
        let mut links = nl.links().await?;
        links.sort_by_key(|l| l.index);
        let mut addrs = Vec::with_capacity(links.len());
        for l in &links {
            addrs.push(nl.addresses(l.index).await?);
        }
        Ok(Links { links, addrs })
    }

    fn owner_of(&self, ip: IpAddr) -> Option<u32> {
        self.links
            .iter()
            .zip(&self.addrs)
            .find(|(_, addrs)| addrs.iter().any(|a| a.prefix.addr() == ip))
            .map(|(l, _)| l.index)
    }

    fn by_name(&self, name: &str) -> Option<u32> {
        self.links.iter().find(|l| l.name == name).map(|l| l.index)
    }

    /// flannel's `--iface-regex`: addresses first (sorted, of the cluster's
    /// families), then names.
    fn by_regex(&self, re: &regex::Regex, fams: &[Family]) -> Option<u32> {
        for (link, addrs) in self.links.iter().zip(&self.addrs) {
            let mut texts: Vec<String> = fams
                .iter()
                .flat_map(|f| usable(addrs, *f))
                .map(|a| a.prefix.addr().to_string())
                .collect();
            texts.sort();
            if texts.iter().any(|t| re.is_match(t)) {
                return Some(link.index);
            }
        }
        self.links
            .iter()
            .find(|l| re.is_match(&l.name))
            .map(|l| l.index)
    }

    fn describe(&self) -> String {
        self.links
            .iter()
            .zip(&self.addrs)
            .map(|(l, addrs)| {
                let ips: Vec<String> = addrs.iter().map(|a| a.prefix.addr().to_string()).collect();
                format!("{}:[{}]", l.name, ips.join(" "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The interface named by `--iface`, `--iface-regex` or
/// `--iface-can-reach`, or `None` when none of them was given.
async fn explicit(
    nl: &Netlink,
    links: &Links,
    flags: &InterfaceChoice,
    cfg: &NetConfig,
) -> Result<Option<u32>> {
    if flags.iface.is_empty() && flags.iface_regex.is_empty() && flags.iface_can_reach.is_none() {
        return Ok(None);
    }
    for spec in &flags.iface {
        let found = match spec.parse::<IpAddr>() {
            Ok(ip) => links.owner_of(ip),
            Err(_) => links.by_name(spec),
        };
        if let Some(index) = found {
            return Ok(Some(index));
        }
        tracing::warn!(iface = %spec, "no interface matches --iface {spec}");
    }
    let fams = families(cfg);
    for pattern in &flags.iface_regex {
        let re = regex::Regex::new(pattern).map_err(|source| ExternalError::InvalidRegex {
            pattern: pattern.clone(),
            source,
        })?;
        if let Some(index) = links.by_regex(&re, &fams) {
            return Ok(Some(index));
        }
    }
    if let Some(target) = flags.iface_can_reach {
        if let Some(route) = nl.route_get(target).await?
            && let Some(oif) = route.oif
        {
            return Ok(Some(oif));
        }
        tracing::warn!(%target, "no route reaches --iface-can-reach {target}");
    }
    Err(ExternalError::NoMatch {
        interfaces: links.describe(),
    })
}

async fn default_route_oif(nl: &Netlink, family: Family) -> Result<Option<u32>> {
    let any = match family {
        Family::V4 => IpNet::V4(ipnet::Ipv4Net::default()),
        Family::V6 => IpNet::V6(ipnet::Ipv6Net::default()),
    };
    Ok(nl
        .routes(family)
        .await?
        .into_iter()
        .find(|r| r.dst == any && r.oif.is_some())
        .and_then(|r| r.oif))
}

async fn implicit(
    nl: &Netlink,
    links: &Links,
    flags: &InterfaceChoice,
    cfg: &NetConfig,
) -> Result<u32> {
    if let Some(ip) = flags.public_ip.filter(|_| cfg.enable_ipv4) {
        let ip = IpAddr::V4(ip);
        return links.owner_of(ip).ok_or(ExternalError::PublicIpNotHeld {
            flag: "--public-ip",
            ip,
        });
    }
    if let Some(ip) = flags.public_ipv6.filter(|_| cfg.enable_ipv6) {
        let ip = IpAddr::V6(ip);
        return links.owner_of(ip).ok_or(ExternalError::PublicIpNotHeld {
            flag: "--public-ipv6",
            ip,
        });
    }
    let v4 = match cfg.enable_ipv4 {
        true => default_route_oif(nl, Family::V4).await?,
        false => None,
    };
    let v6 = match cfg.enable_ipv6 {
        true => default_route_oif(nl, Family::V6).await?,
        false => None,
    };
    match (v4, v6) {
        (Some(a), Some(b)) if a != b => Err(ExternalError::DefaultRoutesDiffer { v4: a, v6: b }),
        (Some(a), _) => Ok(a),
        (None, Some(b)) if !cfg.enable_ipv4 => Ok(b),
        _ => Err(ExternalError::NoDefaultRoute),
    }
}

/// Chooses the external interface in the calling thread's namespace.
pub async fn detect(flags: &InterfaceChoice, cfg: &NetConfig) -> Result<ExternalInterface> {
    let nl = Netlink::connect()?;
    let links = Links::read(&nl).await?;
    let index = match explicit(&nl, &links, flags, cfg).await? {
        Some(index) => index,
        None => implicit(&nl, &links, flags, cfg).await?,
    };
    let link = nl
        .link_by_index(index)
        .await?
        .ok_or(ExternalError::Vanished(index))?;
    if link.mtu == 0 {
        return Err(ExternalError::ZeroMtu(link.name));
    }
    let addrs = nl.addresses(index).await?;
    let (iface_addr, iface_addr_v6) = interface_addresses(&addrs);
    let ext_addr = match cfg.enable_ipv4 {
        true => Some(
            flags
                .public_ip
                .or(iface_addr)
                .ok_or_else(|| ExternalError::NoAddress {
                    iface: link.name.clone(),
                    what: "IPv4",
                    flag: "--public-ip",
                })?,
        ),
        false => None,
    };
    let ext_addr_v6 =
        match cfg.enable_ipv6 {
            true => Some(flags.public_ipv6.or(iface_addr_v6).ok_or_else(|| {
                ExternalError::NoAddress {
                    iface: link.name.clone(),
                    what: "global IPv6",
                    flag: "--public-ipv6",
                }
            })?),
            false => None,
        };
    Ok(ExternalInterface {
        name: link.name,
        index,
        mtu: link.mtu,
        iface_addr,
        iface_addr_v6,
        ext_addr,
        ext_addr_v6,
    })
}
