//! A generic netlink socket for the wireguard family, carrying messages as
//! opaque bytes.
//!
//! Why not the `genetlink` crate: it pulls a second netlink-proto (0.13) and
//! thiserror 1 next to ours. Why not the netlink layer's private request
//! plumbing: it is private to that layer; what is needed here is small
//! (requests answered by an ack, one reply, or a dump), and errors are
//! sorted by the same [`NetlinkError::from_errno`].
//!
//! Why opaque bytes ([`WgGenl`]): netlink-proto traces every message it
//! sends and receives with `{:?}`, and these carry the private key; the
//! `Debug` of `WgGenl` shows only the command and the length.

use std::fmt;

use futures::StreamExt;
use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkDeserializable,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_proto::ConnectionHandle;
use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::{AsyncSocket, SocketAddr, TokioSocket};

use crate::netlink::NetlinkError;

/// How often a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 5;

/// A generic netlink message kept as bytes: the genl header and the
/// attributes, with the family id as the netlink message type.
#[derive(Clone)]
pub(crate) struct WgGenl {
    pub family: u16,
    pub payload: Vec<u8>,
}

impl fmt::Debug for WgGenl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgGenl")
            .field("family", &self.family)
            .field("cmd", &self.payload.first())
            .field("bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl NetlinkSerializable for WgGenl {
    fn message_type(&self) -> u16 {
        self.family
    }

    fn buffer_len(&self) -> usize {
        self.payload.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer.copy_from_slice(&self.payload);
    }
}

impl NetlinkDeserializable for WgGenl {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        Ok(WgGenl {
            family: header.message_type,
            payload: payload.to_vec(),
        })
    }
}

/// A generic netlink connection, bound to the calling thread's namespace.
pub(crate) struct GenlSocket {
    handle: ConnectionHandle<WgGenl>,
}

impl GenlSocket {
    /// Opens the socket and spawns its driver on the current runtime.
    pub(crate) fn open() -> Result<GenlSocket, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (mut conn, handle, _unsolicited) =
            netlink_proto::new_connection_with_socket::<WgGenl, TokioSocket>(NETLINK_GENERIC)
                .map_err(NetlinkError::Socket)?;
        // Acks and ends of dumps are needed to tell "done" from "lost".
        conn.set_forward_ack(true);
        conn.set_forward_done(true);
        conn.socket_mut()
            .socket_mut()
            .set_ext_ack(true)
            .map_err(NetlinkError::Socket)?;
        runtime.spawn(conn);
        Ok(GenlSocket { handle })
    }

    /// Sends a request that changes state and waits for its ack.
    pub(crate) async fn ack(
        &self,
        message: WgGenl,
        op: impl Fn() -> String,
    ) -> Result<(), NetlinkError> {
        self.exchange(message, NLM_F_ACK, &op).await.map(|_| ())
    }

    /// Sends a request answered by one message.
    pub(crate) async fn get(
        &self,
        message: WgGenl,
        op: impl Fn() -> String,
    ) -> Result<WgGenl, NetlinkError> {
        let (mut answers, _) = self.exchange(message, NLM_F_ACK, &op).await?;
        answers.pop().ok_or_else(|| NetlinkError::Protocol {
            op: op(),
            detail: "no answer".into(),
        })
    }

    /// Dumps, retrying when the kernel flags the dump as torn by a
    /// concurrent change (a diff against a torn dump would do wrong things).
    pub(crate) async fn dump(
        &self,
        message: WgGenl,
        op: impl Fn() -> String,
    ) -> Result<Vec<WgGenl>, NetlinkError> {
        for _ in 0..DUMP_RETRIES {
            let (answers, interrupted) = self.exchange(message.clone(), NLM_F_DUMP, &op).await?;
            if !interrupted {
                return Ok(answers);
            }
        }
        Err(NetlinkError::dump_interrupted(op(), DUMP_RETRIES))
    }

    /// One request; the answers, and whether a dump was interrupted.
    async fn exchange(
        &self,
        message: WgGenl,
        flags: u16,
        op: &impl Fn() -> String,
    ) -> Result<(Vec<WgGenl>, bool), NetlinkError> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        let request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        let mut stream = self
            .handle
            .request(request, SocketAddr::new(0, 0))
            .map_err(|_| NetlinkError::ConnectionClosed { op: op() })?;
        let mut answers = Vec::new();
        let mut interrupted = false;
        while let Some(answer) = stream.next().await {
            interrupted |= answer.header.flags & NLM_F_DUMP_INTR != 0;
            match answer.payload {
                NetlinkPayload::InnerMessage(m) => answers.push(m),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        Some(code) => Err(NetlinkError::from_errno(
                            op(),
                            code.get().saturating_abs(),
                            None,
                        )),
                        None => Ok((answers, interrupted)),
                    };
                }
                NetlinkPayload::Done(_) => return Ok((answers, interrupted)),
                NetlinkPayload::Overrun(_) => return Err(NetlinkError::overrun(op(), "answer")),
                _ => {}
            }
        }
        Err(NetlinkError::ConnectionClosed { op: op() })
    }
}
