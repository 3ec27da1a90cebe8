//! The cables: the underlay switch and the hosts plugged into it.
//!
//! ```text
//!   <lab>-ul:   br0 192.0.2.254/24 + 198.51.100.1/32 ── n1, n2, …, st (veth ports)
//!   <lab>-node<i>: eth0 192.0.2.<i>/24, default via 192.0.2.254, ip_forward=1
//!   <lab>-store:   eth0 192.0.2.250/24 (etcd)
//! ```
//!
//! The bridge lives in its own namespace because a bridge in the root
//! namespace did not forward between its ports on these machines (LAB.md),
//! and because the lab must never change the root namespace. Veth pairs are
//! created inside the underlay namespace and one end is moved out, so not
//! even a transient device appears in the root namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd as _;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use weft_dataplane::netlink::{Netlink, RouteSpec};

use crate::LabError;
use crate::error::IoContext as _;
use crate::names::{
    BRIDGE, OUTSIDE_IP, OUTSIDE_IP_V6, UNDERLAY_GATEWAY, UNDERLAY_GATEWAY_V6, UNDERLAY_PREFIX_LEN,
    UNDERLAY_V6_PREFIX_LEN,
};
use crate::netns::{create_netns, in_netns, open_netns, with_netlink};

/// `RTPROT_STATIC`: the lab's default routes are an administrator's routes.
/// Not weft's own protocol number, or the agent would take them for stale
/// routes of its own and delete them.
const RTPROT_STATIC: u8 = 4;

/// The name a node's interface gets inside its namespace.
pub const NODE_IFNAME: &str = "eth0";

/// Creates `<lab>-ul` with the bridge and its two addresses.
pub fn build_underlay(netns: &str, v6: bool) -> Result<(), LabError> {
    create_netns(netns)?;
    no_dad(netns)?;
    with_netlink(netns, |nl| async move {
        loopback_up(&nl).await?;
        let br = nl
            .create_bridge(BRIDGE, None)
            .await
            .ctx(|| format!("cannot create bridge {BRIDGE} in {netns}"))?;
        let mut addrs = vec![
            IpNet::V4(v4net(UNDERLAY_GATEWAY, UNDERLAY_PREFIX_LEN)?),
            IpNet::V4(v4net(OUTSIDE_IP, 32)?),
        ];
        if v6 {
            addrs.push(v6net(UNDERLAY_GATEWAY_V6, UNDERLAY_V6_PREFIX_LEN)?);
            addrs.push(v6net(OUTSIDE_IP_V6, 128)?);
        }
        for addr in addrs {
            nl.add_address(br, addr)
                .await
                .ctx(|| format!("cannot add {addr} to {BRIDGE} in {netns}"))?;
        }
        nl.set_link_up(br)
            .await
            .ctx(|| format!("cannot set {BRIDGE} up in {netns}"))
    })
}

/// A host to plug into the underlay.
pub struct Host<'a> {
    /// Its namespace (must exist).
    pub netns: &'a str,
    /// The bridge port's name inside the underlay namespace (`n3`, `st`).
    pub port: &'a str,
    pub address: Ipv4Addr,
    /// Its IPv6 address, in IPv6 and dual-stack labs.
    pub address_v6: Option<Ipv6Addr>,
    /// Where to route everything: the underlay gateway for nodes on the
    /// flat underlay, their cloud's router for nodes in a cloud; the store
    /// and the routers need no default route.
    pub gateway: Option<Ipv4Addr>,
}

/// Connects `host` to the underlay bridge with a veth pair and configures
/// its end as `eth0`.
pub fn plug(underlay: &str, host: &Host<'_>) -> Result<(), LabError> {
    let target = open_netns(host.netns)?;
    // Unique in the underlay namespace until it is moved out and renamed.
    let peer = format!("{}p", host.port);
    let port = host.port;
    with_netlink(underlay, |nl| async move {
        nl.create_veth(port, &peer)
            .await
            .ctx(|| format!("cannot create veth {port} in {underlay}"))?;
        let peer_index = index_of(&nl, &peer, underlay).await?;
        nl.move_link_to_netns(peer_index, target.as_fd())
            .await
            .ctx(|| format!("cannot move {peer} into {}", host.netns))?;
        let port_index = index_of(&nl, port, underlay).await?;
        let bridge = index_of(&nl, BRIDGE, underlay).await?;
        nl.set_link_controller(port_index, Some(bridge))
            .await
            .ctx(|| format!("cannot attach {port} to {BRIDGE} in {underlay}"))?;
        nl.set_link_up(port_index)
            .await
            .ctx(|| format!("cannot set {port} up in {underlay}"))
    })?;
    let peer = format!("{}p", host.port);
    no_dad(host.netns)?;
    with_netlink(host.netns, |nl| async move {
        let ns = host.netns;
        loopback_up(&nl).await?;
        let index = index_of(&nl, &peer, ns).await?;
        nl.rename_link(index, NODE_IFNAME)
            .await
            .ctx(|| format!("cannot rename {peer} to {NODE_IFNAME} in {ns}"))?;
        let addr = IpNet::V4(v4net(host.address, UNDERLAY_PREFIX_LEN)?);
        nl.add_address(index, addr)
            .await
            .ctx(|| format!("cannot add {addr} to {NODE_IFNAME} in {ns}"))?;
        if let Some(v6) = host.address_v6 {
            let addr = v6net(v6, UNDERLAY_V6_PREFIX_LEN)?;
            nl.add_address(index, addr)
                .await
                .ctx(|| format!("cannot add {addr} to {NODE_IFNAME} in {ns}"))?;
        }
        nl.set_link_up(index)
            .await
            .ctx(|| format!("cannot set {NODE_IFNAME} up in {ns}"))?;
        if let Some(gateway) = host.gateway {
            let route = RouteSpec::unicast(IpNet::V4(Ipv4Net::default()))
                .via(IpAddr::V4(gateway))
                .dev(index)
                .protocol(RTPROT_STATIC);
            nl.replace_route(&route)
                .await
                .ctx(|| format!("cannot add the default route via {gateway} in {ns}"))?;
            if host.address_v6.is_some() {
                let route = RouteSpec::unicast(IpNet::V6(Ipv6Net::default()))
                    .via(IpAddr::V6(UNDERLAY_GATEWAY_V6))
                    .dev(index)
                    .protocol(RTPROT_STATIC);
                nl.replace_route(&route).await.ctx(|| {
                    format!("cannot add the IPv6 default route via {UNDERLAY_GATEWAY_V6} in {ns}")
                })?;
            }
        }
        Ok(())
    })
}

/// Turns IPv4 forwarding on *inside* `netns` (the sysctl is per
/// namespace; the root namespace is never touched). A node forwards
/// between its pods' bridge and the underlay, as a real node does.
pub fn enable_forwarding(netns: &str, v6: bool) -> Result<(), LabError> {
    in_netns(netns, || {
        // /proc/sys/net resolves to the namespace of the opening thread.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .ctx(|| format!("cannot enable net.ipv4.ip_forward in {netns}"))?;
        if v6 {
            std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
                .ctx(|| format!("cannot enable IPv6 forwarding in {netns}"))?;
        }
        Ok(())
    })
}

/// Turns IPv6 duplicate address detection off *inside* `netns`: a lab's
/// addresses are unique by construction, and DAD would hold each new one
/// "tentative" for a second or more (unusable as a source meanwhile).
fn no_dad(netns: &str) -> Result<(), LabError> {
    in_netns(netns, || {
        for conf in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
            // A kernel without IPv6 has no such file; nothing to turn off.
            if std::path::Path::new(&path).exists() {
                std::fs::write(&path, "0").ctx(|| format!("cannot turn DAD off in {netns}"))?;
            }
        }
        Ok(())
    })
}

/// Creates an empty namespace with loopback up: a pod's namespace before
/// the CNI plugin wires it (the kubelet's `loopback` plugin does the same).
pub fn create_host_netns(netns: &str) -> Result<(), LabError> {
    create_netns(netns)?;
    no_dad(netns)?;
    with_netlink(netns, |nl| async move { loopback_up(&nl).await })
}

async fn loopback_up(nl: &Netlink) -> Result<(), LabError> {
    let lo = index_of(nl, "lo", "this namespace").await?;
    nl.set_link_up(lo)
        .await
        .ctx(|| "cannot set lo up".to_owned())
}

/// The index of link `name` in the namespace `nl` works in (`netns`, for
/// the error).
pub(crate) async fn index_of(nl: &Netlink, name: &str, netns: &str) -> Result<u32, LabError> {
    match nl.link_by_name(name).await {
        Ok(Some(link)) => Ok(link.index),
        Ok(None) => Err(LabError::Invalid(format!(
            "link {name} is missing in {netns}"
        ))),
        Err(e) => Err(LabError::netlink(
            format!("cannot look up link {name} in {netns}"),
            e,
        )),
    }
}

fn v6net(addr: Ipv6Addr, len: u8) -> Result<IpNet, LabError> {
    Ipv6Net::new(addr, len)
        .map(IpNet::V6)
        .map_err(|e| LabError::Invalid(format!("{addr}/{len}: {e}")))
}

fn v4net(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, LabError> {
    Ipv4Net::new(addr, len).map_err(|e| LabError::Invalid(format!("{addr}/{len}: {e}")))
}
