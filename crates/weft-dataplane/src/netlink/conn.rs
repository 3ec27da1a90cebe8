//! Request/answer plumbing shared by the rtnetlink and ethtool connections:
//! acks, dumps, single replies and batches, with errors sorted and the
//! kernel's extended-ack sentence attached.
//!
//! Why not rtnetlink's request types: they send one message per datagram and
//! hide the sequence numbers, so a batch could neither share a datagram nor
//! say which item failed. netlink-proto's `request_batch` puts a whole chunk
//! into one `sendmsg`, and the kernel answers each message in order.

use std::fmt::Debug;

use futures::StreamExt;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NlasIterator,
};
use netlink_proto::{Connection, ConnectionHandle};
use netlink_sys::{AsyncSocket, SocketAddr, TokioSocket};

use super::NetlinkError;

/// Messages per datagram in a batch. Bounded because the kernel queues one
/// answer per message on our socket while it processes the datagram, and an
/// answer lost to a full receive buffer (ENOBUFS) would leave its request
/// waiting forever. Measured here: 64 failing routes (error answers with an
/// extended ack, the largest kind) need a 64 KiB buffer, failing at 48 KiB;
/// the buffer is at least the default 208 KiB, and the connection reads
/// every answer before it sends the next datagram. 64 vs 256 per datagram
/// made no measurable difference to 10 000 routes: the kernel dominates.
const BATCH_CHUNK: usize = 64;

/// Chunks handed to the connection before the first is answered, so the
/// driver always has the next datagram ready when an answer wakes it.
const CHUNKS_IN_FLIGHT: usize = 4;

/// How often a dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is
/// retried before the possibly inconsistent result is reported as an error.
const DUMP_RETRIES: usize = 5;

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RX_BUFFER: usize = 1 << 20;

/// The extended-ack attribute carrying the kernel's error sentence.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Bytes of a `struct nlmsghdr`.
pub(crate) const NLMSG_HDRLEN: usize = 16;

/// Opens a netlink socket of `protocol` in the calling thread's namespace,
/// configures it for this layer and spawns its driver on `runtime`.
pub(crate) fn open<T>(
    protocol: isize,
    runtime: &tokio::runtime::Handle,
) -> Result<ConnectionHandle<T>, NetlinkError>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable + Unpin + Send + 'static,
{
    let (mut conn, handle, _unsolicited): (Connection<T, TokioSocket>, _, _) =
        netlink_proto::new_connection_with_socket(protocol).map_err(NetlinkError::Socket)?;
    // Acks and the end of dumps are needed to tell "done" from "connection
    // lost"; the extended ack carries the kernel's explanation; capping the
    // ack keeps it small (no echo of the whole request).
    conn.set_forward_ack(true);
    conn.set_forward_done(true);
    let socket = conn.socket_mut().socket_mut();
    socket.set_ext_ack(true).map_err(NetlinkError::Socket)?;
    socket.set_cap_ack(true).map_err(NetlinkError::Socket)?;
    socket
        .set_rx_buf_sz(RX_BUFFER)
        .map_err(NetlinkError::Socket)?;
    runtime.spawn(conn);
    Ok(handle)
}

fn request_message<T>(inner: T, flags: u16) -> NetlinkMessage<T> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner))
}

/// Sends one request that changes state and waits for the kernel's ack.
pub(crate) async fn ack<T>(
    handle: &ConnectionHandle<T>,
    message: T,
    flags: u16,
    op: impl Fn() -> String + Sync,
) -> Result<(), NetlinkError>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable,
{
    let mut results = ack_chunk(handle, vec![message], flags, &|_| op()).await;
    results
        .pop()
        .unwrap_or_else(|| Err(NetlinkError::ConnectionClosed { op: op() }))
}

/// Sends many state-changing requests, [`BATCH_CHUNK`] per datagram, and
/// returns one result per message, in order.
pub(crate) async fn ack_batch<T>(
    handle: &ConnectionHandle<T>,
    messages: Vec<T>,
    flags: u16,
    op: &(dyn Fn(usize) -> String + Sync),
) -> Vec<Result<(), NetlinkError>>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable + Clone,
{
    let total = messages.len();
    let mut chunks = Vec::with_capacity(total.div_ceil(BATCH_CHUNK));
    let mut rest = messages.into_iter();
    loop {
        let chunk: Vec<T> = rest.by_ref().take(BATCH_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let mut results = Vec::with_capacity(total);
    let mut answers = futures::stream::iter(chunks.into_iter().enumerate())
        .map(|(n, chunk)| {
            let base = n * BATCH_CHUNK;
            let op = move |i: usize| op(base + i);
            async move { ack_chunk(handle, chunk, flags, &op).await }
        })
        .buffered(CHUNKS_IN_FLIGHT);
    while let Some(chunk_results) = answers.next().await {
        results.extend(chunk_results);
    }
    results
}

/// One datagram of requests, each asking for an ack. The kernel processes
/// the messages of a datagram in order and answers each (ack or error) in
/// order, so the n-th answer's sequence number is the first one's plus n.
async fn ack_chunk<T>(
    handle: &ConnectionHandle<T>,
    messages: Vec<T>,
    flags: u16,
    op: &(dyn Fn(usize) -> String + Sync),
) -> Vec<Result<(), NetlinkError>>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable,
{
    let n = messages.len();
    let flags = flags | NLM_F_REQUEST | NLM_F_ACK;
    let batch = messages.into_iter().map(|m| request_message(m, flags));
    let mut answers: Vec<Option<Result<(), NetlinkError>>> = (0..n).map(|_| None).collect();
    if let Ok(mut stream) = handle.request_batch(batch, SocketAddr::new(0, 0)) {
        let mut first_seq = None;
        while let Some(answer) = stream.next().await {
            let seq = answer.header.sequence_number;
            let first = *first_seq.get_or_insert(seq);
            let i = seq.wrapping_sub(first) as usize;
            let Some(slot) = answers.get_mut(i) else {
                continue;
            };
            // Only the ack or error settles a message; a reply some
            // families send before the ack is not an answer.
            if !matches!(answer.payload, NetlinkPayload::Error(_)) {
                continue;
            }
            *slot = Some(match error_of(&answer) {
                Some((errno, said)) => Err(NetlinkError::from_errno(op(i), errno, said.as_deref())),
                None => Ok(()),
            });
        }
    }
    answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.unwrap_or_else(|| Err(NetlinkError::ConnectionClosed { op: op(i) })))
        .collect()
}

/// Sends a request answered by exactly one message (a `get` of one object).
pub(crate) async fn get<T>(
    handle: &ConnectionHandle<T>,
    message: T,
    flags: u16,
    op: impl Fn() -> String,
) -> Result<T, NetlinkError>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable,
{
    let mut stream = send(handle, message, flags, &op)?;
    while let Some(answer) = stream.next().await {
        refused(&answer, &op)?;
        if let NetlinkPayload::InnerMessage(inner) = answer.payload {
            return Ok(inner);
        }
    }
    Err(NetlinkError::ConnectionClosed { op: op() })
}

/// Dumps a table. Retries when the kernel flags the dump as interrupted by a
/// concurrent change, because a reconciler diffing against a torn dump would
/// add or delete the wrong things.
pub(crate) async fn dump<T>(
    handle: &ConnectionHandle<T>,
    message: T,
    op: impl Fn() -> String,
) -> Result<Vec<T>, NetlinkError>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable + Clone,
{
    for _ in 0..DUMP_RETRIES {
        if let Some(items) = dump_once(handle, message.clone(), &op).await? {
            return Ok(items);
        }
    }
    Err(NetlinkError::dump_interrupted(op(), DUMP_RETRIES))
}

/// One dump; `None` when it was interrupted.
async fn dump_once<T>(
    handle: &ConnectionHandle<T>,
    message: T,
    op: &impl Fn() -> String,
) -> Result<Option<Vec<T>>, NetlinkError>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable,
{
    let mut stream = send(handle, message, NLM_F_DUMP, op)?;
    let mut items = Vec::new();
    let mut interrupted = false;
    while let Some(answer) = stream.next().await {
        refused(&answer, op)?;
        interrupted |= answer.header.flags & NLM_F_DUMP_INTR != 0;
        match answer.payload {
            NetlinkPayload::InnerMessage(inner) => items.push(inner),
            NetlinkPayload::Done(_) => return Ok((!interrupted).then_some(items)),
            NetlinkPayload::Overrun(_) => return Err(NetlinkError::overrun(op(), "dump")),
            _ => {}
        }
    }
    Err(NetlinkError::ConnectionClosed { op: op() })
}

/// Sends one request (a get or a dump) whose answers come as a stream.
fn send<T, F>(
    handle: &ConnectionHandle<T>,
    message: T,
    flags: u16,
    op: &F,
) -> Result<impl futures::Stream<Item = NetlinkMessage<T>> + use<T, F>, NetlinkError>
where
    T: Debug + NetlinkSerializable + NetlinkDeserializable,
    F: Fn() -> String,
{
    let request = request_message(message, flags | NLM_F_REQUEST);
    handle
        .request(request, SocketAddr::new(0, 0))
        .map_err(|_| NetlinkError::ConnectionClosed { op: op() })
}

/// The kernel's refusal in `answer`, as the error of `op`.
fn refused<T>(answer: &NetlinkMessage<T>, op: &impl Fn() -> String) -> Result<(), NetlinkError> {
    match error_of(answer) {
        Some((errno, said)) => Err(NetlinkError::from_errno(op(), errno, said.as_deref())),
        None => Ok(()),
    }
}

/// The errno (positive) and the kernel's extended-ack sentence of an error
/// answer; `None` for anything else, acks included.
fn error_of<T>(answer: &NetlinkMessage<T>) -> Option<(i32, Option<String>)> {
    let NetlinkPayload::Error(err) = &answer.payload else {
        return None;
    };
    let code = err.code?;
    let said = (answer.header.flags & NLM_F_ACK_TLVS != 0)
        .then(|| ext_ack_message(&err.header, answer.header.flags & NLM_F_CAPPED != 0))
        .flatten();
    Some((code.get().saturating_abs(), said))
}

/// Finds `NLMSGERR_ATTR_MSG` after the echoed request in an error payload.
fn ext_ack_message(echo: &[u8], capped: bool) -> Option<String> {
    let offset = if capped {
        NLMSG_HDRLEN
    } else {
        let len = u32::from_ne_bytes(echo.get(..4)?.try_into().ok()?) as usize;
        len.div_ceil(4) * 4
    };
    let tlvs = echo.get(offset..)?;
    NlasIterator::new(tlvs)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let value = nla.value();
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            String::from_utf8_lossy(&value[..end]).into_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NLA_HEADER_SIZE;

    fn nla_len(value_len: usize) -> usize {
        (NLA_HEADER_SIZE + value_len).div_ceil(4) * 4
    }

    #[test]
    fn ext_ack_sentence_is_found_after_a_capped_echo() {
        let mut echo = vec![0u8; NLMSG_HDRLEN];
        let text = b"Nexthop has invalid gateway\0";
        let len = (NLA_HEADER_SIZE + text.len()) as u16;
        echo.extend_from_slice(&len.to_ne_bytes());
        echo.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        echo.extend_from_slice(text);
        echo.resize(nla_len(text.len()) + NLMSG_HDRLEN, 0);
        assert_eq!(
            ext_ack_message(&echo, true).as_deref(),
            Some("Nexthop has invalid gateway")
        );
    }
}
