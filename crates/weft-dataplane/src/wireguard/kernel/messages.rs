//! The kernel WireGuard family's messages (`include/uapi/linux/wireguard.h`),
//! built and read by pure functions.
//!
//! Why pure and public: the kernel path cannot run on machines without the
//! module (these lab machines), so its requests are checked byte for byte
//! against fixtures derived by hand from `wireguard.h` (see the
//! `wireguard_kernel_golden` test); the bytes returned here are exactly the
//! generic netlink payloads (genl header + attributes) the kernel path
//! sends.
//!
//! Peers are changed incrementally: a new peer is sent whole; a changed one
//! with `WGPEER_F_UPDATE_ONLY` and only what changed (`REPLACE_ALLOWEDIPS`
//! only when its allowed IPs changed); a stale one with `REMOVE_ME`.
//! `WGDEVICE_F_REPLACE_PEERS` is only ever sent with the first configuration
//! of a device weft just created. Large changes are split so that no message
//! exceeds a byte budget; a peer whose allowed IPs do not fit is continued in
//! the next message with `UPDATE_ONLY` (so a lost first part never creates a
//! half-configured peer), as wireguard-tools does.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use netlink_packet_core::{Emitable, NLA_HEADER_SIZE, ParseableParametrized};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::constants::GENL_HDRLEN;
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardDeviceFlags, WireguardMessage, WireguardPeer, WireguardPeerAttribute,
    WireguardPeerFlags,
};
use weft_core::wg_key::WgKey;

use super::super::diff::{NewPeer, PeerOp, keepalive_of, networks, psk_of};
use super::super::opening::{FirstHandshake, Prime};
use super::super::{PrivateKey, WgPeerState};

/// The generic netlink family name the kernel registers.
pub const FAMILY_NAME: &str = "wireguard";

/// Bytes of generic netlink payload per SET_DEVICE message. The whole
/// netlink message (16-byte header included) stays within 8 KiB, the
/// largest buffer wireguard-tools uses: comfortably under the socket
/// buffers, and about 50 peers with one network each per message.
pub const MESSAGE_BUDGET: usize = 8192 - 16;

/// The generic netlink payload of a message.
fn emit(message: WireguardMessage) -> Vec<u8> {
    let genl = GenlMessage::from_payload(message);
    let mut buf = vec![0; genl.buffer_len()];
    genl.emit(&mut buf);
    buf
}

/// SET_DEVICE with the private key and listen port. `replace_peers` only
/// for a device weft has just created.
pub fn configure_device(
    name: &str,
    key: &PrivateKey,
    listen_port: u16,
    replace_peers: bool,
) -> Vec<u8> {
    let mut attributes = vec![
        WireguardAttribute::IfName(name.to_string()),
        WireguardAttribute::PrivateKey(key.to_bytes()),
        WireguardAttribute::ListenPort(listen_port),
    ];
    if replace_peers {
        attributes.push(WireguardAttribute::Flags(
            WireguardDeviceFlags::ReplacePeers,
        ));
    }
    emit(WireguardMessage {
        cmd: WireguardCmd::SetDevice,
        attributes,
    })
}

/// GET_DEVICE of `name`, to be sent as a dump request (the kernel only
/// implements it as one: a device with many peers spans several messages).
pub fn get_device(name: &str) -> Vec<u8> {
    emit(WireguardMessage {
        cmd: WireguardCmd::GetDevice,
        attributes: vec![WireguardAttribute::IfName(name.to_string())],
    })
}

/// The SET_DEVICE messages that start sessions: per peer, its keepalive
/// set to each of [`Prime::steps`] in turn (`UPDATE_ONLY`, so a peer
/// removed meanwhile is not created again). The kernel initiates a
/// handshake on the step from 0 to non-zero.
pub(crate) fn prime_messages(name: &str, primes: &[Prime], budget: usize) -> Vec<Vec<u8>> {
    use WireguardPeerAttribute as A;
    let mut packer = Packer::new(name, budget);
    for prime in primes {
        for step in prime.steps() {
            let head = vec![
                A::PublicKey(prime.key.0),
                A::Flags(WireguardPeerFlags::UpdateOnly),
                A::PersistentKeepalive(step),
            ];
            packer.add(prime.key, head, vec![]);
        }
    }
    packer.finish()
}

/// The SET_DEVICE messages carrying `ops`.
pub(crate) fn peer_messages(name: &str, ops: &[PeerOp<'_>], budget: usize) -> Vec<Vec<u8>> {
    let mut packer = Packer::new(name, budget);
    for op in ops {
        let (head, ips) = peer_attributes(op);
        packer.add(op.public_key(), head, ips);
    }
    packer.finish()
}

/// A peer's attributes other than its allowed IPs, and its allowed IPs.
fn peer_attributes(op: &PeerOp<'_>) -> (Vec<WireguardPeerAttribute>, Vec<WireguardAllowedIp>) {
    use WireguardPeerAttribute as A;
    let key = A::PublicKey(op.public_key().0);
    match op {
        PeerOp::Remove(_) => (vec![key, A::Flags(WireguardPeerFlags::RemoveMe)], vec![]),
        PeerOp::Add(NewPeer { spec, first }) => {
            let mut head = vec![key];
            if let Some(psk) = psk_of(spec.psk) {
                head.push(A::PresharedKey(psk.0));
            }
            head.push(A::Endpoint(spec.endpoint));
            if let Some(k) = keepalive_of(spec.keepalive)
                && *first != FirstHandshake::Theirs
            {
                head.push(A::PersistentKeepalive(k));
            }
            (head, allowed_ips(&spec.allowed_ips))
        }
        PeerOp::Update(u) => {
            let mut flags = WireguardPeerFlags::UpdateOnly;
            if u.allowed_ips {
                flags |= WireguardPeerFlags::ReplaceAllowedIps;
            }
            let mut head = vec![key, A::Flags(flags)];
            if u.psk {
                // All zeros clears the PSK.
                head.push(A::PresharedKey(
                    psk_of(u.spec.psk).unwrap_or(WgKey([0; 32])).0,
                ));
            }
            if u.endpoint {
                head.push(A::Endpoint(u.spec.endpoint));
            }
            if let Some(keepalive) = u.keepalive {
                head.push(A::PersistentKeepalive(keepalive.unwrap_or(0)));
            }
            let ips = if u.allowed_ips {
                allowed_ips(&u.spec.allowed_ips)
            } else {
                vec![]
            };
            (head, ips)
        }
    }
}

/// Allowed IPs as the kernel wants them: network address, prefix length, in
/// a stable order.
fn allowed_ips(nets: &[IpNet]) -> Vec<WireguardAllowedIp> {
    networks(nets)
        .into_iter()
        .map(|net| {
            let family = match net {
                IpNet::V4(_) => WireguardAddressFamily::Ipv4,
                IpNet::V6(_) => WireguardAddressFamily::Ipv6,
            };
            WireguardAllowedIp(vec![
                WireguardAllowedIpAttr::Family(family),
                WireguardAllowedIpAttr::IpAddr(net.network()),
                WireguardAllowedIpAttr::Cidr(net.prefix_len()),
            ])
        })
        .collect()
}

/// Fills SET_DEVICE messages with peers up to the byte budget.
struct Packer<'a> {
    name: &'a str,
    budget: usize,
    /// Bytes of a message with no peer yet: genl header, IFNAME, the PEERS
    /// nest header.
    base: usize,
    used: usize,
    peers: Vec<WireguardPeer>,
    done: Vec<Vec<u8>>,
}

impl<'a> Packer<'a> {
    fn new(name: &'a str, budget: usize) -> Packer<'a> {
        let base = GENL_HDRLEN
            + WireguardAttribute::IfName(name.to_string()).buffer_len()
            + NLA_HEADER_SIZE;
        Packer {
            name,
            budget,
            base,
            used: base,
            peers: Vec::new(),
            done: Vec::new(),
        }
    }

    fn flush(&mut self) {
        if self.peers.is_empty() {
            return;
        }
        self.done.push(emit(WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes: vec![
                WireguardAttribute::IfName(self.name.to_string()),
                WireguardAttribute::Peers(std::mem::take(&mut self.peers)),
            ],
        }));
        self.used = self.base;
    }

    /// Adds one peer, continuing it in further messages if its allowed IPs
    /// do not fit.
    fn add(
        &mut self,
        key: WgKey,
        mut head: Vec<WireguardPeerAttribute>,
        ips: Vec<WireguardAllowedIp>,
    ) {
        let mut rest = ips.as_slice();
        loop {
            let fixed = NLA_HEADER_SIZE
                + head.as_slice().buffer_len()
                + if rest.is_empty() { 0 } else { NLA_HEADER_SIZE };
            let first = rest.first().map_or(0, |ip| ip.buffer_len());
            if !self.peers.is_empty() && self.used + fixed + first > self.budget {
                self.flush();
            }
            let mut room = self.budget.saturating_sub(self.used + fixed);
            let mut n = 0;
            while let Some(ip) = rest.get(n) {
                if ip.buffer_len() > room {
                    break;
                }
                room -= ip.buffer_len();
                n += 1;
            }
            // A message must carry at least one allowed IP, whatever the
            // budget, or a tiny budget would loop forever.
            if n == 0 && !rest.is_empty() {
                n = 1;
            }
            let (now, later) = rest.split_at(n);
            if !now.is_empty() {
                head.push(WireguardPeerAttribute::AllowedIps(now.to_vec()));
            }
            let peer = WireguardPeer(head);
            self.used += peer.buffer_len();
            self.peers.push(peer);
            if later.is_empty() {
                return;
            }
            self.flush();
            rest = later;
            head = vec![
                WireguardPeerAttribute::PublicKey(key.0),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::UpdateOnly),
            ];
        }
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.flush();
        self.done
    }
}

/// Reads the peers out of the messages of a GET_DEVICE dump, merging a peer
/// the kernel continued from one message into the next. The device's own
/// attributes (its private key among them) are dropped unread.
pub fn parse_get_device(payloads: &[Vec<u8>]) -> Result<Vec<WgPeerState>, String> {
    let mut peers: Vec<WgPeerState> = Vec::new();
    for payload in payloads {
        let message = GenlMessage::<WireguardMessage>::parse_with_param(payload.as_slice(), 0)
            .map_err(|e| format!("cannot parse a GET_DEVICE answer: {e}"))?;
        for attribute in message.payload.attributes {
            let WireguardAttribute::Peers(list) = attribute else {
                continue;
            };
            for peer in list {
                let state = peer_state(peer)?;
                match peers.last_mut() {
                    Some(last) if last.public_key == state.public_key => {
                        last.allowed_ips.extend(state.allowed_ips);
                    }
                    _ => peers.push(state),
                }
            }
        }
    }
    Ok(peers)
}

fn peer_state(peer: WireguardPeer) -> Result<WgPeerState, String> {
    use WireguardPeerAttribute as A;
    let mut key = None;
    let mut state = WgPeerState {
        public_key: WgKey([0; 32]),
        endpoint: None,
        allowed_ips: Vec::new(),
        psk: None,
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
        keepalive: None,
    };
    for attribute in peer.0 {
        match attribute {
            A::PublicKey(k) => key = Some(WgKey(k)),
            A::PresharedKey(k) => state.psk = psk_of(Some(WgKey(k))),
            A::Endpoint(e) => state.endpoint = Some(e),
            A::PersistentKeepalive(k) => state.keepalive = keepalive_of(Some(k)),
            A::LastHandshake(t) if t.seconds > 0 || t.nano_seconds > 0 => {
                let secs = u64::try_from(t.seconds).unwrap_or(0);
                let nanos = u32::try_from(t.nano_seconds).unwrap_or(0);
                state.last_handshake =
                    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
            }
            A::RxBytes(n) => state.rx_bytes = n,
            A::TxBytes(n) => state.tx_bytes = n,
            A::AllowedIps(ips) => {
                for ip in ips {
                    state.allowed_ips.push(allowed_ip(&ip)?);
                }
            }
            _ => {}
        }
    }
    state.public_key = key.ok_or("a peer without a public key")?;
    Ok(state)
}

fn allowed_ip(ip: &WireguardAllowedIp) -> Result<IpNet, String> {
    let mut addr: Option<IpAddr> = None;
    let mut cidr = None;
    for attribute in &ip.0 {
        match attribute {
            WireguardAllowedIpAttr::IpAddr(a) => addr = Some(*a),
            WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
            _ => {}
        }
    }
    match (addr, cidr) {
        (Some(a), Some(c)) => IpNet::new(a, c).map_err(|e| format!("allowed IP {a}/{c}: {e}")),
        _ => Err("an allowed IP without address or prefix length".into()),
    }
}

/// The whole diff-to-bytes path in one call, for the golden tests (it is
/// what `KernelDevice::apply` does with a read of the device in between).
#[cfg(feature = "test-hooks")]
mod whole {
    use std::collections::HashSet;

    use weft_core::wg_key::WgKey;

    use super::super::super::diff::{self, Opening};
    use super::super::super::roaming::LeaseEndpoints;
    use super::super::super::{WgPeerSpec, WgPeerState};
    use super::peer_messages;

    /// The SET_DEVICE messages that turn `actual` peers into `desired`, each at
    /// most `budget` bytes (unless a single allowed IP does not fit); empty when
    /// nothing changes. The error says why `desired` was refused.
    ///
    /// `own` is this device's public key: new peers whose key sorts above it
    /// are added without their keepalive (the other end starts the session,
    /// see `wireguard/opening.rs`). `None` adds every peer whole.
    pub fn apply_peers(
        name: &str,
        actual: &[WgPeerState],
        desired: &[WgPeerSpec],
        own: Option<WgKey>,
        budget: usize,
    ) -> Result<Vec<Vec<u8>>, String> {
        let withheld = HashSet::new();
        let opening = match own {
            Some(own) => Opening::ByKey {
                own,
                withheld: &withheld,
            },
            None => Opening::Either,
        };
        // No memory and no sessions: every endpoint off its lease is set.
        let endpoints = LeaseEndpoints::default();
        let rule = endpoints.rule(std::time::SystemTime::now());
        Ok(peer_messages(
            name,
            &diff::diff(actual, desired, opening, rule)?,
            budget,
        ))
    }
}

#[cfg(feature = "test-hooks")]
pub use whole::apply_peers;
