//! Renumbering a node's NIC under a running agent, as a DHCP lease that
//! changes or an address moved by an operator does (`weft lab renumber`).

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::Lab;
use crate::LabError;
use crate::cloud::CloudNode;
use crate::names::{MAX_NODES, UNDERLAY_PREFIX_LEN};
use crate::netns::{in_netns, with_netlink};
use crate::topology::NODE_IFNAME;

/// How far a renumbered node moves: `192.0.2.<i>` becomes
/// `192.0.2.<i + STEP>` (and back), clear of the store, the routers and the
/// gateway as long as the lab has at most [`MAX_RENUMBERED`] nodes.
const STEP: u8 = 100;
/// The most nodes a lab may have for `renumber` (their second addresses
/// stay below the routers' .231).
pub const MAX_RENUMBERED: u32 = 100;

/// What a renumbering did: the NIC's address, and in a lab with clouds
/// the node's new public address (its router's new 1:1 mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renumbered {
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
    pub public: Option<Ipv4Addr>,
}

impl Lab {
    /// Gives `node`'s `eth0` another address without touching its agent:
    /// the new address is added, then the old one removed
    /// (`promote_secondaries` keeps the new one and the routes in place),
    /// as a DHCP client does. A second call moves it back. The agent, which
    /// advertises its interface's address when no `--public-ip` is given,
    /// is expected to follow on its own. In a lab with clouds the node's
    /// public mapping moves too (`192.0.2.<i>` to `192.0.2.<i+100>` on its
    /// router), as an elastic IP re-associated: the agent, started with the
    /// old `--public-ip`, cannot know; `weft public-ip` tells it.
    pub fn renumber(&mut self, node: &str) -> Result<Renumbered, LabError> {
        let record = self.node(node)?.clone();
        if self.state.nodes.len() as u32 > MAX_RENUMBERED.min(MAX_NODES) {
            return Err(LabError::Invalid(format!(
                "renumber needs a lab of at most {MAX_RENUMBERED} nodes"
            )));
        }
        let from = record.underlay_ip;
        let to = moved(from);
        let netns = record.netns.clone();
        in_netns(&netns, || {
            let path = format!("/proc/sys/net/ipv4/conf/{NODE_IFNAME}/promote_secondaries");
            std::fs::write(&path, "1")
                .map_err(|e| LabError::io(format!("cannot write {path} in {netns}"), e))
        })?;
        let prefix = |ip: Ipv4Addr| {
            Ipv4Net::new(ip, UNDERLAY_PREFIX_LEN)
                .map(IpNet::V4)
                .map_err(|e| LabError::Invalid(format!("{ip}: {e}")))
        };
        let (old, new) = (prefix(from)?, prefix(to)?);
        let ns = netns.as_str();
        with_netlink(ns, |nl| async move {
            let index = crate::topology::index_of(&nl, NODE_IFNAME, ns).await?;
            nl.add_address(index, new)
                .await
                .map_err(|e| LabError::netlink(format!("cannot add {new} in {ns}"), e))?;
            nl.del_address(index, old)
                .await
                .map_err(|e| LabError::netlink(format!("cannot remove {old} in {ns}"), e))
        })?;
        let public = record.public_ip.map(|old| (old, moved(old)));
        if let (Some(c), Some((old_public, new_public))) = (record.cloud, public) {
            let members: Vec<CloudNode> = self
                .state
                .nodes
                .iter()
                .filter(|n| n.cloud == Some(c))
                .filter_map(|n| {
                    let (private, public) = if n.name == record.name {
                        (to, new_public)
                    } else {
                        (n.underlay_ip, n.public_ip?)
                    };
                    Some(CloudNode { private, public })
                })
                .collect();
            let router = self.state.name.netns_of(&crate::names::cloud_name(c));
            crate::cloud::remap(&router, old_public, new_public, &members)?;
        }
        self.set_node(node, |n| {
            n.underlay_ip = to;
            n.public_ip = public.map(|(_, new)| new);
        })?;
        Ok(Renumbered {
            from,
            to,
            public: public.map(|(_, new)| new),
        })
    }
}

/// `a.b.c.<d>` moved by [`STEP`], down if it can, else up: a second move
/// brings it back.
fn moved(addr: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, d] = addr.octets();
    Ipv4Addr::new(a, b, c, if d > STEP { d - STEP } else { d + STEP })
}
