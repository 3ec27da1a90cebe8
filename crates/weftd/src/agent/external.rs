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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use weft_core::Family;
use weft_core::netconf::NetConfig;
use weft_dataplane::netlink::{AddrInfo, LinkInfo, Netlink, Scope};

use crate::flags::Flags;

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
    flags: &Flags,
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
        let re = regex::Regex::new(pattern).with_context(|| {
            format!("--iface-regex {pattern:?} is not a valid regular expression")
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
    bail!(
        "Failed to find interface to use that matches the interfaces and/or regexes provided (interfaces here: {})",
        links.describe()
    )
}

async fn default_route_oif(nl: &Netlink, family: Family) -> Result<Option<u32>> {
    let any = IpNet::new(
        match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
        0,
    )?;
    Ok(nl
        .routes(family)
        .await?
        .into_iter()
        .find(|r| r.dst == any && r.oif.is_some())
        .and_then(|r| r.oif))
}

async fn implicit(nl: &Netlink, links: &Links, flags: &Flags, cfg: &NetConfig) -> Result<u32> {
    if let Some(ip) = flags.public_ip.filter(|_| cfg.enable_ipv4) {
        return links.owner_of(IpAddr::V4(ip)).with_context(|| {
            format!(
                "Failed to find any valid interface to use: no interface holds --public-ip {ip}; \
                 choose the interface with --iface (the published address may differ from it)"
            )
        });
    }
    if let Some(ip) = flags.public_ipv6.filter(|_| cfg.enable_ipv6) {
        return links.owner_of(IpAddr::V6(ip)).with_context(|| {
            format!(
                "Failed to find any valid interface to use: no interface holds --public-ipv6 {ip}; \
                 choose the interface with --iface"
            )
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
        (Some(a), Some(b)) if a != b => bail!(
            "v6 default route interface {b} must be the same with v4 default route interface {a}: \
             in dual-stack both families use one interface; choose it with --iface"
        ),
        (Some(a), _) => Ok(a),
        (None, Some(b)) if !cfg.enable_ipv4 => Ok(b),
        _ => bail!(
            "Failed to find any valid interface to use: no default route; name the interface \
             peers reach this node on with --iface, or its address with --public-ip"
        ),
    }
}

pub async fn detect(flags: &Flags, cfg: &NetConfig) -> Result<ExternalInterface> {
    let nl = Netlink::connect().context("cannot open netlink")?;
    let links = Links::read(&nl).await?;
    let index = match explicit(&nl, &links, flags, cfg).await? {
        Some(index) => index,
        None => implicit(&nl, &links, flags, cfg).await?,
    };
    let link = nl
        .link_by_index(index)
        .await?
        .with_context(|| format!("interface {index} disappeared"))?;
    if link.mtu == 0 {
        bail!("interface {} reports MTU 0", link.name);
    }
    let addrs = nl.addresses(index).await?;
    let iface_addr = match best_addr(&addrs, Family::V4) {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    let iface_addr_v6 = match best_addr(&addrs, Family::V6) {
        Some(IpAddr::V6(a)) => Some(a),
        _ => None,
    };
    let ext_addr = match cfg.enable_ipv4 {
        true => Some(flags.public_ip.or(iface_addr).with_context(|| {
            format!(
                "interface {} has no IPv4 address: set --public-ip",
                link.name
            )
        })?),
        false => None,
    };
    let ext_addr_v6 = match cfg.enable_ipv6 {
        true => Some(flags.public_ipv6.or(iface_addr_v6).with_context(|| {
            format!(
                "interface {} has no global IPv6 address: set --public-ipv6",
                link.name
            )
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
