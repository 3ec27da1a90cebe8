//! Link and address events (RTNLGRP_LINK, RTNLGRP_IPV4/IPV6_IFADDR), so the
//! agent notices at once when someone deletes `flannel.1` under it (and
//! recreates the device with every peer) or renumbers the external
//! interface (and publishes its new address), instead of waiting for the
//! next periodic resync.

use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::mpsc::UnboundedReceiver;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::SocketAddr;
use rtnetlink::MulticastGroup;

use super::link::link_of;
use super::{Netlink, NetlinkError};

/// A change to a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: a link appeared *or changed* (flags, MTU, name...).
    New { index: u32, name: String },
    /// RTM_DELLINK: a link was deleted (or moved to another namespace).
    Deleted { index: u32, name: String },
    /// RTM_NEWADDR or RTM_DELADDR: an address of the link was added or
    /// removed (a renumbered NIC).
    Address { index: u32 },
    /// The kernel dropped events because they were not read fast enough
    /// (the socket overran): the caller must resync from a full listing.
    Lost,
}

/// The stream returned by [`Netlink::link_events`]. Dropping it closes its
/// socket. It ends only if its driver task stops (the runtime shuts down);
/// lost events are reported as [`LinkEvent::Lost`].
#[derive(Debug)]
pub struct LinkEvents {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    driver: tokio::task::AbortHandle,
}

impl Drop for LinkEvents {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Stream for LinkEvents {
    type Item = LinkEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LinkEvent>> {
        loop {
            match Pin::new(&mut self.messages).poll_next(cx) {
                Poll::Ready(Some((message, _))) => {
                    if let Some(event) = event_of(message) {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Netlink {
    /// Subscribes to link events on a connection of its own.
    ///
    /// The socket is opened in the calling thread's network namespace, which
    /// must be the one [`Netlink::connect`] was called in; a call from a
    /// thread in another namespace is refused rather than silently watching
    /// the wrong namespace.
    pub fn link_events(&self) -> Result<LinkEvents, NetlinkError> {
        let op = || "subscribing to link events".to_string();
        if self.netns_inode.is_some() && current_netns_inode() != self.netns_inode {
            return Err(NetlinkError::InvalidInput {
                op: op(),
                reason: "called from a thread in another network namespace than Netlink::connect"
                    .into(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(NetlinkError::Socket)?;
        let driver = runtime.spawn(conn).abort_handle();
        Ok(LinkEvents { messages, driver })
    }
}

/// The inode of the calling thread's network namespace, which identifies the
/// namespace; `None` without /proc.
pub(crate) fn current_netns_inode() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

fn event_of(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
            link_of(m).map(|l| LinkEvent::New {
                index: l.index,
                name: l.name,
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
            link_of(m).map(|l| LinkEvent::Deleted {
                index: l.index,
                name: l.name,
            })
        }
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m),
        ) => Some(LinkEvent::Address {
            index: m.header.index,
        }),
        NetlinkPayload::Overrun(_) => Some(LinkEvent::Lost),
        _ => None,
    }
}
