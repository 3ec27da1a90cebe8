//! The kernel path: a wireguard link configured over generic netlink.
//!
//! Messages are built by [`messages`] (pure, golden-tested, since the module
//! is absent on the lab machines) and carried as bytes by [`socket`].

pub mod messages;
mod socket;

use netlink_packet_core::{Emitable, NLA_TYPE_MASK, NlasIterator};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::constants::GENL_ID_CTRL;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};

use super::diff::PeerOp;
use super::opening::Prime;
use super::{PrivateKey, WgError, WgPeerState};
use socket::{GenlSocket, WgGenl};

/// `CTRL_ATTR_FAMILY_ID` in an nlctrl answer.
const CTRL_ATTR_FAMILY_ID: u16 = 1;

/// A kernel WireGuard device: its name and a generic netlink connection
/// with the family resolved.
pub(crate) struct KernelDevice {
    name: String,
    socket: GenlSocket,
    family: u16,
}

impl KernelDevice {
    /// Opens a generic netlink socket in the calling thread's namespace and
    /// resolves the `wireguard` family. No family means no module:
    /// [`WgError::KernelUnavailable`].
    pub(crate) async fn connect(name: &str) -> Result<KernelDevice, WgError> {
        let netlink_error = |op: &str, source| WgError::Netlink {
            device: name.to_string(),
            op: op.to_string(),
            source,
        };
        let socket = GenlSocket::open().map_err(|e| netlink_error("opening generic netlink", e))?;
        let mut request = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(messages::FAMILY_NAME.into())],
        });
        request.finalize();
        let mut payload = vec![0; request.buffer_len()];
        request.emit(&mut payload);
        let request = WgGenl {
            family: GENL_ID_CTRL,
            payload,
        };
        let op = || "looking up the wireguard generic netlink family".to_string();
        let reply = match socket.get(request, op).await {
            Ok(reply) => reply,
            Err(e) if e.is_not_found() => {
                return Err(WgError::KernelUnavailable {
                    device: name.to_string(),
                    detail: e.to_string(),
                });
            }
            Err(e) => return Err(netlink_error("looking up the wireguard family", e)),
        };
        let family = reply
            .payload
            .get(4..)
            .and_then(|attrs| {
                NlasIterator::new(attrs)
                    .filter_map(Result::ok)
                    .find(|nla| nla.kind() & NLA_TYPE_MASK == CTRL_ATTR_FAMILY_ID)
                    .and_then(|nla| {
                        Some(u16::from_ne_bytes(nla.value().get(..2)?.try_into().ok()?))
                    })
            })
            .ok_or_else(|| WgError::Protocol {
                device: name.to_string(),
                detail: "no family id in the nlctrl answer".into(),
            })?;
        Ok(KernelDevice {
            name: name.to_string(),
            socket,
            family,
        })
    }

    fn message(&self, payload: Vec<u8>) -> WgGenl {
        WgGenl {
            family: self.family,
            payload,
        }
    }

    /// Sets the private key and listen port (the kernel keeps sessions when
    /// both are unchanged).
    pub(crate) async fn configure(
        &self,
        key: &PrivateKey,
        listen_port: u16,
        replace_peers: bool,
    ) -> Result<(), WgError> {
        let payload = messages::configure_device(&self.name, key, listen_port, replace_peers);
        self.socket
            .ack(self.message(payload), || {
                format!("setting private key and listen port {listen_port}")
            })
            .await
            .map_err(|source| WgError::Netlink {
                device: self.name.clone(),
                op: "configuring the device".into(),
                source,
            })
    }

    /// The device's peers, from a GET_DEVICE dump.
    pub(crate) async fn peers(&self) -> Result<Vec<WgPeerState>, WgError> {
        let request = self.message(messages::get_device(&self.name));
        let answers = self
            .socket
            .dump(request, || "reading the device".to_string())
            .await
            .map_err(|source| WgError::Netlink {
                device: self.name.clone(),
                op: "reading peers".into(),
                source,
            })?;
        let payloads: Vec<Vec<u8>> = answers.into_iter().map(|m| m.payload).collect();
        messages::parse_get_device(&payloads).map_err(|detail| WgError::Protocol {
            device: self.name.clone(),
            detail,
        })
    }

    /// Sends the SET_DEVICE messages for `ops`, one after the other: each
    /// is acked before the next leaves, so a refusal stops the rest (the
    /// next pass re-reads the device and carries on from there).
    pub(crate) async fn apply(&self, ops: &[PeerOp<'_>]) -> Result<(), WgError> {
        let payloads = messages::peer_messages(&self.name, ops, messages::MESSAGE_BUDGET);
        self.send_all(payloads, "changing peers").await
    }

    /// Starts a session with each of `primes` (see `wireguard/opening.rs`).
    pub(crate) async fn prime(&self, primes: &[Prime]) -> Result<(), WgError> {
        let payloads = messages::prime_messages(&self.name, primes, messages::MESSAGE_BUDGET);
        self.send_all(payloads, "starting sessions").await
    }

    async fn send_all(&self, payloads: Vec<Vec<u8>>, what: &str) -> Result<(), WgError> {
        let total = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            let op = || format!("{what} (message {} of {total})", i + 1);
            self.socket
                .ack(self.message(payload), op)
                .await
                .map_err(|source| WgError::Netlink {
                    device: self.name.clone(),
                    op: what.into(),
                    source,
                })?;
        }
        Ok(())
    }
}
