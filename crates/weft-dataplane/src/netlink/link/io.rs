//! Links through the socket: list, create, change, delete. The messages
//! come from the per-kind modules and are read by [`link_of`].

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, LinkWireguard};
use weft_core::mac::Mac;

use super::super::{Netlink, NetlinkError, conn};
use super::{LinkInfo, VxlanLinkSpec, ipip, link_of, vxlan};

impl Netlink {
    /// Every link in the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let answers = conn::dump(&self.handle, request, || "listing links".to_string()).await?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => link_of(l),
                _ => None,
            })
            .collect())
    }

    /// The link called `name`, or `None`.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let message = LinkUnspec::new_with_name(name).build();
        self.get_link(message, || format!("looking up link {name}"))
            .await
    }

    /// The link with index `index`, or `None`.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let message = LinkUnspec::new_with_index(index).build();
        self.get_link(message, || format!("looking up link {index}"))
            .await
    }

    async fn get_link(
        &self,
        message: LinkMessage,
        op: impl Fn() -> String,
    ) -> Result<Option<LinkInfo>, NetlinkError> {
        match conn::get(&self.handle, RouteNetlinkMessage::GetLink(message), 0, &op).await {
            Ok(RouteNetlinkMessage::NewLink(m)) => Ok(link_of(m)),
            Ok(other) => Err(NetlinkError::Protocol {
                op: op(),
                detail: format!("expected a link, got {other:?}"),
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a vxlan device exactly as flannel does (§3.1) and returns its
    /// index. The device is left down: addresses first, then
    /// [`Netlink::set_link_up`], as flannel orders it.
    pub async fn create_vxlan(&self, spec: &VxlanLinkSpec) -> Result<u32, NetlinkError> {
        let message = vxlan::create_message(spec);
        let op = || {
            format!(
                "creating vxlan link {} (vni {}, local {}, dstport {})",
                spec.name, spec.vni, spec.local, spec.port
            )
        };
        self.create_link(message, &spec.name, "vxlan", op).await
    }

    /// Creates an ipip device with `local` as source and any remote, as
    /// flannel's ipip backend does (§3.3), and returns its index.
    pub async fn create_ipip(
        &self,
        name: &str,
        local: Ipv4Addr,
        mtu: u32,
    ) -> Result<u32, NetlinkError> {
        let op = || format!("creating ipip link {name} (local {local}, mtu {mtu})");
        self.create_link(ipip::create_message(name, local, mtu), name, "ipip", op)
            .await
    }

    /// Creates a kernel WireGuard device and returns its index.
    /// `NotSupported` when the kernel has no WireGuard, the cue to fall back
    /// to the userspace implementation.
    pub async fn create_wireguard(
        &self,
        name: &str,
        mtu: Option<u32>,
    ) -> Result<u32, NetlinkError> {
        let mut b = LinkWireguard::new(name);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        let op = || format!("creating wireguard link {name}");
        self.create_link(b.build(), name, "wireguard", op).await
    }

    /// Creates a bridge (the lab's underlay switch, a node's `cni0`).
    pub async fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<u32, NetlinkError> {
        let mut b = LinkBridge::new(name);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        let op = || format!("creating bridge {name}");
        self.create_link(b.build(), name, "bridge", op).await
    }

    /// Creates a veth pair `name` <-> `peer` (the lab's cables).
    pub async fn create_veth(&self, name: &str, peer: &str) -> Result<(), NetlinkError> {
        let message = LinkVeth::new(name, peer).build();
        let op = || format!("creating veth pair {name} <-> {peer}");
        self.create_link(message, name, "veth", op)
            .await
            .map(|_| ())
    }

    async fn create_link(
        &self,
        message: LinkMessage,
        name: &str,
        kind: &str,
        op: impl Fn() -> String + Sync,
    ) -> Result<u32, NetlinkError> {
        let request = RouteNetlinkMessage::NewLink(message);
        conn::ack(&self.handle, request, NLM_F_CREATE | NLM_F_EXCL, &op)
            .await
            .map_err(|e| {
                e.with_support_hint(&format!(
                    "this kernel has no `{kind}` link type (module not built or not loaded)"
                ))
            })?;
        // The ack does not carry the new index: look it up by name.
        match self.link_by_name(name).await? {
            Some(link) => Ok(link.index),
            None => Err(NetlinkError::Protocol {
                op: op(),
                detail: "the link vanished right after its creation".into(),
            }),
        }
    }

    /// Moves a link into another network namespace (the lab hands veth ends
    /// to node and pod namespaces).
    pub async fn move_link_to_netns(
        &self,
        index: u32,
        netns_fd: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index)
            .setns_by_fd(netns_fd.as_raw_fd())
            .build();
        self.set_link(message, || {
            format!("moving link {index} to another network namespace")
        })
        .await
    }

    /// Renames a link (the kernel refuses while it is up).
    pub async fn rename_link(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).name(name).build();
        self.set_link(message, || format!("renaming link {index} to {name}"))
            .await
    }

    /// Deletes a link; `NotFound` if it is already gone.
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build());
        conn::ack(&self.handle, request, 0, || {
            format!("deleting link {index}")
        })
        .await
    }

    /// Sets a link administratively up.
    pub async fn set_link_up(&self, index: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.set_link(message, || format!("setting link {index} up"))
            .await
    }

    /// Sets a link administratively down.
    pub async fn set_link_down(&self, index: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).down().build();
        self.set_link(message, || format!("setting link {index} down"))
            .await
    }

    /// Changes a link's MTU in place: weft applies MTU changes to an existing
    /// device instead of ignoring them (flannel #1775).
    pub async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link(message, || format!("setting mtu {mtu} on link {index}"))
            .await
    }

    /// Changes a link's MAC: the VTEP MAC must equal the one published in
    /// the lease, or peers send to a MAC nobody answers (flannel #1795).
    pub async fn set_link_mac(&self, index: u32, mac: Mac) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index)
            .address(mac.octets().to_vec())
            .build();
        self.set_link(message, || format!("setting mac {mac} on link {index}"))
            .await
    }

    /// Makes a link a port of `controller` (a bridge), or of none.
    pub async fn set_link_controller(
        &self,
        index: u32,
        controller: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let b = LinkUnspec::new_with_index(index);
        let message = match controller {
            Some(c) => b.controller(c).build(),
            None => b.nocontroller().build(),
        };
        self.set_link(message, || {
            format!("attaching link {index} to controller {controller:?}")
        })
        .await
    }

    async fn set_link(
        &self,
        message: LinkMessage,
        op: impl Fn() -> String + Sync,
    ) -> Result<(), NetlinkError> {
        conn::ack(&self.handle, RouteNetlinkMessage::SetLink(message), 0, op).await
    }
}
