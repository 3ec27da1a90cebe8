//! Clouds: nodes in private underlays that share no network, each cloud
//! behind a router doing 1:1 NAT to public addresses on a shared
//! "internet" segment, as K3s's multicloud guide describes clusters across
//! providers (`weft lab up --clouds N`).
//!
//! ```text
//!   <lab>-ul (the internet):  br0 192.0.2.254/24, store 192.0.2.250
//!      │ c1: 192.0.2.231/24 + 192.0.2.1/32, 192.0.2.3/32 (node1, node3's public addresses)
//!   <lab>-cloud1 (router):    br0 172.16.1.254/24, ip_forward=1, nft 1:1 NAT
//!      │ n1: 172.16.1.1/24 via 172.16.1.254     │ n3: 172.16.1.3/24
//!   <lab>-node1                                 <lab>-node3
//! ```
//!
//! A node's public address is the one it would have on the flat underlay
//! (`192.0.2.<i>`), held by its cloud's router and mapped both ways to its
//! private address (`172.16.<c>.<i>`). Nothing routes private addresses
//! between clouds: a node reaches another cloud only through public
//! addresses. Traffic between two nodes of one cloud through their public
//! addresses turns at the router (hairpin NAT), as a cloud's NAT gateway
//! does.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::{IpNet, Ipv4Net};

use crate::LabError;
use crate::error::IoContext as _;
use crate::names::{BRIDGE, cloud_gateway, router_public_ip};
use crate::netns::{in_netns, with_netlink};
use crate::topology::{Host, NODE_IFNAME, create_host_netns, enable_forwarding, index_of, plug};

/// One node of a cloud, by its two addresses.
#[derive(Debug, Clone, Copy)]
pub struct CloudNode {
    pub private: Ipv4Addr,
    pub public: Ipv4Addr,
}

/// Builds cloud `c`'s router in `router_netns`: plugged into the internet
/// (`underlay_netns`) at its own public address and its nodes', with the
/// cloud's private switch, forwarding, and the NAT of `nodes`. The nodes
/// are plugged into the private switch afterwards ([`crate::topology::plug`]
/// with the router's namespace as the underlay).
pub fn build_cloud(
    underlay_netns: &str,
    router_netns: &str,
    c: u32,
    nodes: &[CloudNode],
) -> Result<(), LabError> {
    let invalid = || LabError::Invalid(format!("cloud {c} is out of range"));
    let public = router_public_ip(c).ok_or_else(invalid)?;
    let gateway = cloud_gateway(c).ok_or_else(invalid)?;
    create_host_netns(router_netns)?;
    plug(
        underlay_netns,
        &Host {
            netns: router_netns,
            port: &format!("c{c}"),
            address: public,
            address_v6: None,
            gateway: None,
        },
    )?;
    let nodes_public: Vec<Ipv4Addr> = nodes.iter().map(|n| n.public).collect();
    with_netlink(router_netns, |nl| async move {
        let br = nl
            .create_bridge(BRIDGE, None)
            .await
            .ctx(|| format!("cannot create bridge {BRIDGE} in {router_netns}"))?;
        let private = IpNet::V4(v4net(gateway, 24)?);
        nl.add_address(br, private)
            .await
            .ctx(|| format!("cannot add {private} to {BRIDGE} in {router_netns}"))?;
        nl.set_link_up(br)
            .await
            .ctx(|| format!("cannot set {BRIDGE} up in {router_netns}"))?;
        let wan = index_of(&nl, NODE_IFNAME, router_netns).await?;
        for addr in nodes_public {
            let addr = IpNet::V4(v4net(addr, 32)?);
            nl.add_address(wan, addr)
                .await
                .ctx(|| format!("cannot add {addr} to {NODE_IFNAME} in {router_netns}"))?;
        }
        Ok(())
    })?;
    enable_forwarding(router_netns, false)?;
    in_netns(router_netns, || {
        // A router that sends hairpinned packets back out of the interface
        // they came in on would tell the sender to go direct (ICMP
        // redirect): to a private address the sender must not use.
        for conf in ["all", "default", BRIDGE] {
            let path = format!("/proc/sys/net/ipv4/conf/{conf}/send_redirects");
            std::fs::write(&path, "0").ctx(|| format!("cannot write {path} in {router_netns}"))?;
        }
        Ok(())
    })?;
    load_nat(router_netns, nodes)
}

/// Makes a cloud node's `eth0` put complete checksums on the "wire", as a
/// physical NIC does, by turning its TX checksum offload off.
///
/// Why: a veth hands the router's namespace the very packet the node's
/// kernel built, checksums still left for "the hardware" to fill in. A
/// VXLAN packet from a device with offload on then carries a complete
/// outer UDP checksum and a partial inner one, and the router's NAT,
/// rewriting the outer addresses, adjusts the outer checksum as if it were
/// the partial one: the receiver drops every such packet as a bad
/// checksum. Measured here (kernel 6.18): with offload on both ends of
/// `flannel.1`, ICMP crossed the clouds but every TCP connection timed
/// out; with the nodes' `eth0` offload off, all pairs pass. A real cloud's
/// NAT gateway is another machine and only ever sees checksummed packets
/// off the wire; NAT done by the node's own kernel (kube-proxy's
/// masquerade of VXLAN packets, flannel #1279) is the case this lab would
/// otherwise reproduce.
pub fn nic_checksums_on_the_wire(node_netns: &str) -> Result<(), LabError> {
    with_netlink(node_netns, |nl| async move {
        nl.set_tx_checksum(NODE_IFNAME, false).await.map_err(|e| {
            LabError::netlink(
                format!("cannot turn TX checksum offload off on {NODE_IFNAME} in {node_netns}"),
                e,
            )
        })
    })
}

/// The router's 1:1 NAT as an nftables ruleset: each public address
/// forwarded to its node's private one, and each node's packets leaving
/// the router with its public address as the source.
pub fn nat_ruleset(nodes: &[CloudNode]) -> String {
    let mut pre = String::new();
    let mut post = String::new();
    for n in nodes {
        pre.push_str(&format!(
            "    ip daddr {} dnat to {}\n",
            n.public, n.private
        ));
        post.push_str(&format!(
            "    ip saddr {} snat to {}\n",
            n.private, n.public
        ));
    }
    format!(
        "table ip weft-lab-nat {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n{post}  }}\n}}\n"
    )
}

/// Moves one node's public address on its cloud's router from `old` to
/// `new` and loads the NAT of `nodes` (the cloud's nodes, that one with its
/// new addresses) in place of the old: what a cloud does when an elastic IP
/// moves. Connections tracked under the old mapping stay with the old
/// public address, which answers no more.
pub fn remap(
    router_netns: &str,
    old: Ipv4Addr,
    new: Ipv4Addr,
    nodes: &[CloudNode],
) -> Result<(), LabError> {
    let (old, new) = (IpNet::V4(v4net(old, 32)?), IpNet::V4(v4net(new, 32)?));
    with_netlink(router_netns, |nl| async move {
        let wan = index_of(&nl, NODE_IFNAME, router_netns).await?;
        nl.add_address(wan, new)
            .await
            .ctx(|| format!("cannot add {new} in {router_netns}"))?;
        nl.del_address(wan, old)
            .await
            .ctx(|| format!("cannot remove {old} in {router_netns}"))
    })?;
    load_nat(router_netns, nodes)
}

/// Loads the NAT of `nodes`, replacing the table in one transaction.
fn load_nat(router_netns: &str, nodes: &[CloudNode]) -> Result<(), LabError> {
    // Declaring the table first makes the delete valid on a first load.
    let ruleset = format!(
        "table ip weft-lab-nat\ndelete table ip weft-lab-nat\n{}",
        nat_ruleset(nodes)
    );
    in_netns(router_netns, move || {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                LabError::io(
                    "cannot run nft (Debian's nftables: scripts/install-deps.sh) for a cloud's NAT",
                    e,
                )
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(ruleset.as_bytes())
                .map_err(|e| LabError::io("cannot give nft the NAT rules", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| LabError::io("nft did not finish", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(LabError::Invalid(format!(
                "nft refused the NAT rules in {router_netns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    })
}

fn v4net(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, LabError> {
    Ipv4Net::new(addr, len).map_err(|e| LabError::Invalid(format!("{addr}/{len}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_is_mapped_both_ways() {
        let rules = nat_ruleset(&[CloudNode {
            private: Ipv4Addr::new(172, 16, 1, 3),
            public: Ipv4Addr::new(192, 0, 2, 3),
        }]);
        assert!(
            rules.contains("ip daddr 192.0.2.3 dnat to 172.16.1.3"),
            "{rules}"
        );
        assert!(
            rules.contains("ip saddr 172.16.1.3 snat to 192.0.2.3"),
            "{rules}"
        );
    }
}
