//! Choosing the external interface and the public addresses published to
//! peers, as flanneld does without `--iface` options: the interface that
//! holds `--public-ip` (or `--public-ipv6`), else the one of the default
//! route; in dual-stack both default routes must use the same interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use weft_core::Family;
use weft_core::netconf::NetConfig;
use weft_dataplane::netlink::{AddrInfo, Netlink, Scope};

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
    let mut candidates: Vec<&AddrInfo> = addrs
        .iter()
        .filter(|a| Family::of_net(a.prefix) == family)
        .filter(|a| match a.prefix.addr() {
            IpAddr::V4(v4) => !v4.is_loopback(),
            IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
        })
        .collect();
    candidates.sort_by_key(|a| (a.scope != Scope::Universe, !a.permanent));
    candidates.first().map(|a| a.prefix.addr())
}

async fn owner_of(nl: &Netlink, ip: IpAddr) -> Result<Option<u32>> {
    for link in nl.links().await? {
        let addrs = nl.addresses(link.index).await?;
        if addrs.iter().any(|a| a.prefix.addr() == ip) {
            return Ok(Some(link.index));
        }
    }
    Ok(None)
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

pub async fn detect(flags: &Flags, cfg: &NetConfig) -> Result<ExternalInterface> {
    let nl = Netlink::connect().context("cannot open netlink")?;
    let index = if let Some(ip) = flags.public_ip.filter(|_| cfg.enable_ipv4) {
        owner_of(&nl, IpAddr::V4(ip)).await?.with_context(|| {
            format!(
                "Failed to find any valid interface to use: no interface holds --public-ip {ip}"
            )
        })?
    } else if let Some(ip) = flags.public_ipv6.filter(|_| cfg.enable_ipv6) {
        owner_of(&nl, IpAddr::V6(ip)).await?.with_context(|| {
            format!(
                "Failed to find any valid interface to use: no interface holds --public-ipv6 {ip}"
            )
        })?
    } else {
        let v4 = if cfg.enable_ipv4 {
            default_route_oif(&nl, Family::V4).await?
        } else {
            None
        };
        let v6 = if cfg.enable_ipv6 {
            default_route_oif(&nl, Family::V6).await?
        } else {
            None
        };
        match (v4, v6) {
            (Some(a), Some(b)) if a != b => bail!(
                "the IPv6 default route uses interface {b} but the IPv4 one uses {a}: in dual-stack both must use the same interface; set --public-ip/--public-ipv6 to choose"
            ),
            (Some(a), _) => a,
            (None, Some(b)) if !cfg.enable_ipv4 => b,
            _ => bail!(
                "Failed to find any valid interface to use: no default route; set --public-ip to the address of the interface peers reach this node on"
            ),
        }
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
    let ext_addr = if cfg.enable_ipv4 {
        Some(flags.public_ip.or(iface_addr).with_context(|| {
            format!(
                "interface {} has no IPv4 address: set --public-ip",
                link.name
            )
        })?)
    } else {
        None
    };
    let ext_addr_v6 = if cfg.enable_ipv6 {
        Some(flags.public_ipv6.or(iface_addr_v6).with_context(|| {
            format!(
                "interface {} has no global IPv6 address: set --public-ipv6",
                link.name
            )
        })?)
    } else {
        None
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
