//! Renumbering a node's NIC under a running agent, as a DHCP lease that
//! changes or an address moved by an operator does (`weft lab renumber`).

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::Lab;
use crate::LabError;
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

/// What a renumbering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renumbered {
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
}

impl Lab {
    /// Gives `node`'s `eth0` another address on the underlay without
    /// touching its agent: the new address is added, then the old one
    /// removed (`promote_secondaries` keeps the new one and the routes in
    /// place), as a DHCP client does. A second call moves it back. The
    /// agent, which advertises its interface's address when no
    /// `--public-ip` is given, is expected to follow on its own.
    pub fn renumber(&mut self, node: &str) -> Result<Renumbered, LabError> {
        let record = self.node(node)?.clone();
        if self.state.clouds > 0 {
            return Err(LabError::Invalid(
                "renumber works on the flat underlay only: in a lab with clouds the \
                 router's NAT and its connection tracking would have to move too"
                    .to_owned(),
            ));
        }
        if self.state.nodes.len() as u32 > MAX_RENUMBERED.min(MAX_NODES) {
            return Err(LabError::Invalid(format!(
                "renumber needs a lab of at most {MAX_RENUMBERED} nodes"
            )));
        }
        let from = record.underlay_ip;
        let [a, b, c, d] = from.octets();
        let to = Ipv4Addr::new(a, b, c, if d > STEP { d - STEP } else { d + STEP });
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
            let index = match nl.link_by_name(NODE_IFNAME).await {
                Ok(Some(link)) => link.index,
                Ok(None) => {
                    return Err(LabError::Invalid(format!(
                        "{NODE_IFNAME} is missing in {ns}"
                    )));
                }
                Err(e) => return Err(LabError::netlink("cannot find the node's NIC", e)),
            };
            nl.add_address(index, new)
                .await
                .map_err(|e| LabError::netlink(format!("cannot add {new} in {ns}"), e))?;
            nl.del_address(index, old)
                .await
                .map_err(|e| LabError::netlink(format!("cannot remove {old} in {ns}"), e))
        })?;
        self.set_node(node, |n| n.underlay_ip = to)?;
        Ok(Renumbered { from, to })
    }
}
