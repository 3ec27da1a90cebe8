//! The XFRM netlink socket: sends the messages of `message.rs` and reads the
//! answers. Blocking and short: the kernel answers XFRM requests at once,
//! and a whole dump of a node's policies is a few kilobytes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_XFRM};

use super::message::{
    self, MSG_DELPOLICY, MSG_DELSA, MSG_GETPOLICY, MSG_GETSA, MSG_NEWPOLICY, MSG_NEWSA,
    MSG_UPDPOLICY, PolicyDir, XfrmPolicy, XfrmSa,
};
use crate::netlink::NetlinkError;
use crate::netlink::conn::NLMSG_HDRLEN;

/// A connection to the kernel's XFRM netlink, bound to the network
/// namespace of the thread that opened it.
#[derive(Debug)]
pub struct Xfrm {
    socket: Mutex<Socket>,
    seq: AtomicU32,
}

impl Xfrm {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open() -> Result<Xfrm, NetlinkError> {
        let mut socket = Socket::new(NETLINK_XFRM).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Xfrm {
            socket: Mutex::new(socket),
            seq: AtomicU32::new(1),
        })
    }

    /// Adds `p`, or replaces the policy with its selector and direction.
    pub fn update_policy(&self, p: &XfrmPolicy) -> Result<(), NetlinkError> {
        let op = format!("xfrm policy update {} {} -> {}", p.dir, p.src, p.dst);
        self.request(
            &op,
            MSG_UPDPOLICY,
            NLM_F_ACK,
            &message::policy_payload(p),
            |_, _| Ok(()),
        )
    }

    /// Deletes the policy with this selector and direction.
    pub fn delete_policy(
        &self,
        dir: PolicyDir,
        src: ipnet::IpNet,
        dst: ipnet::IpNet,
    ) -> Result<(), NetlinkError> {
        let op = format!("xfrm policy delete {dir} {src} -> {dst}");
        self.request(
            &op,
            MSG_DELPOLICY,
            NLM_F_ACK,
            &message::policy_id_payload(dir, src, dst),
            |_, _| Ok(()),
        )
    }

    /// Every main-type policy of the namespace, in the kinds weft reads.
    pub fn policies(&self) -> Result<Vec<XfrmPolicy>, NetlinkError> {
        self.dump(
            "xfrm policy dump",
            MSG_GETPOLICY,
            MSG_NEWPOLICY,
            message::parse_policy,
        )
    }

    /// Every SA of the namespace.
    pub fn sas(&self) -> Result<Vec<XfrmSa>, NetlinkError> {
        self.dump("xfrm state dump", MSG_GETSA, MSG_NEWSA, |payload| {
            message::parse_sa(payload).map(Some)
        })
    }

    /// Dumps with request `get`: every answer of kind `new` that `parse`
    /// reads as a `T` (`None`: a kind weft does not read).
    fn dump<T, E: std::fmt::Display>(
        &self,
        op: &str,
        get: u16,
        new: u16,
        parse: impl Fn(&[u8]) -> Result<Option<T>, E>,
    ) -> Result<Vec<T>, NetlinkError> {
        let mut out = Vec::new();
        self.request(
            op,
            get,
            NLM_F_DUMP,
            &message::dump_payload(get),
            |kind, payload| {
                if kind == new
                    && let Some(item) = parse(payload).map_err(|e| protocol(op, e))?
                {
                    out.push(item);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// Whether this kernel can hold ESP SAs: adds and deletes a throw-away
    /// one (see [`message::probe_sa_payload`]). `Ok(false)` when the kernel
    /// has no ESP (EPROTONOSUPPORT, ENOENT: no `esp4`, built in or
    /// loadable); other errors are errors.
    pub fn esp_supported(&self) -> Result<bool, NetlinkError> {
        let op = "xfrm state add (ESP probe)";
        // A probe left by a killed predecessor would answer EEXIST.
        let _ = self.request(
            op,
            MSG_DELSA,
            NLM_F_ACK,
            &message::probe_sa_id_payload(),
            |_, _| Ok(()),
        );
        let added = self.request(
            op,
            MSG_NEWSA,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &message::probe_sa_payload(),
            |_, _| Ok(()),
        );
        match added {
            Ok(()) => {
                self.request(
                    "xfrm state delete (ESP probe)",
                    MSG_DELSA,
                    NLM_F_ACK,
                    &message::probe_sa_id_payload(),
                    |_, _| Ok(()),
                )?;
                Ok(true)
            }
            Err(NetlinkError::Kernel { errno, .. })
                if errno == nix::libc::EPROTONOSUPPORT || errno == nix::libc::ENOSYS =>
            {
                Ok(false)
            }
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends one request and reads answers until the ack, the error, or the
    /// end of the dump, handing every other message to `each`.
    fn request(
        &self,
        op: &str,
        kind: u16,
        flags: u16,
        payload: &[u8],
        mut each: impl FnMut(u16, &[u8]) -> Result<(), NetlinkError>,
    ) -> Result<(), NetlinkError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let len = NLMSG_HDRLEN + payload.len();
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(payload);
        let socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        socket.send(&buf, 0).map_err(|e| {
            NetlinkError::from_errno(op.to_owned(), e.raw_os_error().unwrap_or(0), None)
        })?;
        loop {
            let mut rx: Vec<u8> = Vec::with_capacity(1 << 16);
            socket.recv(&mut rx, 0).map_err(|e| {
                NetlinkError::from_errno(op.to_owned(), e.raw_os_error().unwrap_or(0), None)
            })?;
            let mut at = 0;
            while rx.len() >= at + NLMSG_HDRLEN {
                let h = &rx[at..];
                let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let mkind = u16::from_ne_bytes([h[4], h[5]]);
                let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if mlen < NLMSG_HDRLEN || at + mlen > rx.len() {
                    return Err(protocol(op, format!("message of {mlen} bytes")));
                }
                let body = &h[NLMSG_HDRLEN..mlen];
                at += mlen.next_multiple_of(4);
                if mseq != seq {
                    continue;
                }
                match mkind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or_else(|| protocol(op, "short error message"))?;
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(NetlinkError::from_errno(op.to_owned(), -code, None))
                        };
                    }
                    _ => each(mkind, body)?,
                }
            }
        }
    }
}

fn protocol(op: &str, detail: impl std::fmt::Display) -> NetlinkError {
    NetlinkError::Protocol {
        op: op.to_owned(),
        detail: detail.to_string(),
    }
}
