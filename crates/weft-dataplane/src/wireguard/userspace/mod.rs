//! The userspace path: gotatun (Mullvad's fork of boringtun) in this
//! process, on a TUN device of the device's name, configured in process
//! through its typed API and also serving the standard UAPI socket.
//!
//! Why gotatun: tokio-native (it runs on the agent's runtime, on a
//! current-thread one too), the fastest of the three implementations
//! measured here (dependencies.md §3), and its UAPI reports absolute
//! handshake times (boringtun's `wg show` says "56 years ago").

mod transport;
mod tun_offload;
mod uapi;
mod udp_gso;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gotatun::device::configure::PeerStats;
use gotatun::device::uapi::UapiServer;
use gotatun::device::{Device, DeviceBuilder, Peer};
use gotatun::x25519::PublicKey;
use ipnet::IpNet;
use ipnetwork::IpNetwork;
use weft_core::wg_key::WgKey;

use super::diff::{PeerOp, keepalive_of, networks, psk_of};
use super::{WgDeviceSpec, WgError, WgPeerSpec, WgPeerState};
use crate::netlink::Netlink;
use uapi::UapiSocket;

type GotaDevice = Device<(udp_gso::GsoUdpFactory, transport::TunTx, transport::TunRx)>;

/// UDP socket buffers asked for (wireguard-go's size; the kernel caps it at
/// `net.core.[rw]mem_max`).
const UDP_BUFFERS: usize = 7 << 20;

/// How long `close` waits for the TUN link to disappear.
const LINK_GONE_TIMEOUT: Duration = Duration::from_secs(2);

/// An in-process WireGuard device. Dropping it stops the device (from the
/// runtime it was opened on) and removes the UAPI socket.
pub(crate) struct UserspaceDevice {
    name: String,
    /// `None` only once closed or dropped.
    device: Option<GotaDevice>,
    uapi: Option<UapiSocket>,
    socket_path: PathBuf,
    runtime: tokio::runtime::Handle,
}

impl UserspaceDevice {
    /// Creates the TUN device, starts gotatun on it with the key and port,
    /// sets the MTU, and serves `<uapi_dir>/<name>.sock`. Returns the device
    /// and its link index.
    pub(crate) async fn open(
        nl: &Netlink,
        spec: &WgDeviceSpec,
        uapi_dir: &Path,
    ) -> Result<(UserspaceDevice, u32), WgError> {
        let name = spec.name.as_str();
        let failed = |op: &str, detail: String| WgError::Userspace {
            device: name.to_string(),
            op: op.to_string(),
            detail,
        };
        let (client, server) = UapiServer::new();
        let (tun_tx, tun_rx) = transport::open(name, u16::try_from(spec.mtu).unwrap_or(u16::MAX))
            .map_err(|e| {
            failed(
                "creating the TUN device",
                format!("{e} (is /dev/net/tun there, and no other process holding the name?)"),
            )
        })?;
        let device = DeviceBuilder::new()
            .with_udp(udp_gso::GsoUdpFactory::with_buffers(UDP_BUFFERS))
            .with_ip_pair(tun_tx, tun_rx)
            .with_listen_port(spec.listen_port)
            .with_uapi(server)
            .build()
            .await
            .map_err(|e| failed("starting", e.to_string()))?;
        // The key is set after the build on purpose: gotatun binds its UDP
        // socket when the key changes, not when a device is built without
        // peers; an unusable port thus fails here, not at the first peer.
        device
            .set_private_key(spec.private_key.secret())
            .await
            .map_err(|e| {
                failed(
                    &format!("listening on UDP port {}", spec.listen_port),
                    format!("{e} (is another WireGuard using that port?)"),
                )
            })?;
        let mut this = UserspaceDevice {
            name: name.to_string(),
            device: Some(device),
            uapi: None,
            socket_path: PathBuf::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        let netlink_error = |op: &str| {
            let op = op.to_string();
            move |source| WgError::Netlink {
                device: name.to_string(),
                op,
                source,
            }
        };
        let link = nl
            .link_by_name(name)
            .await
            .map_err(netlink_error("looking up the TUN link"))?
            .ok_or_else(|| failed("looking up the TUN link", "it vanished".into()))?;
        // gotatun reads the MTU back every few seconds; it only bounds the
        // padding of packets, so the brief delay is harmless.
        if link.mtu != spec.mtu {
            nl.set_link_mtu(link.index, spec.mtu)
                .await
                .map_err(netlink_error(&format!("setting mtu {}", spec.mtu)))?;
        }
        let socket = UapiSocket::serve(uapi_dir, name, client).map_err(|(path, op, source)| {
            WgError::Uapi {
                device: name.to_string(),
                path,
                op,
                source,
            }
        })?;
        this.socket_path = socket.path().to_path_buf();
        this.uapi = Some(socket);
        Ok((this, link.index))
    }

    pub(crate) fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The peers, with handshake times made absolute (gotatun reports the
    /// time elapsed since).
    pub(crate) async fn peers(&self) -> Vec<WgPeerState> {
        let Some(device) = &self.device else {
            return Vec::new();
        };
        let stats = device.peers().await;
        let now = SystemTime::now();
        stats.into_iter().map(|p| state_of(p, now)).collect()
    }

    /// Applies `ops` under one write lock of the device.
    pub(crate) async fn apply(&self, ops: &[PeerOp<'_>]) -> Result<(), WgError> {
        let Some(device) = &self.device else {
            return Ok(());
        };
        device
            .write(async |d| {
                for op in ops {
                    match op {
                        PeerOp::Remove(key) => {
                            d.remove_peer(&PublicKey::from(key.0)).await;
                        }
                        PeerOp::Add(new) => {
                            d.add_peer(peer_of(new.spec));
                        }
                        PeerOp::Update(u) => {
                            d.modify_peer(&PublicKey::from(u.spec.public_key.0), |p| {
                                if u.endpoint {
                                    p.set_endpoint(Some(u.spec.endpoint));
                                }
                                if u.allowed_ips {
                                    p.clear_allowed_ips();
                                    p.add_allowed_ips(gota_networks(&u.spec.allowed_ips));
                                }
                                if u.psk {
                                    p.set_preshared_key(psk_of(u.spec.psk).map(|k| k.0));
                                }
                                if let Some(keepalive) = u.keepalive {
                                    p.set_keepalive(keepalive);
                                }
                            })
                            .await;
                        }
                    }
                }
            })
            .await
            .map_err(|e| WgError::Userspace {
                device: self.name.clone(),
                op: "changing peers".into(),
                detail: e.to_string(),
            })
    }

    /// Switches to a new private key. gotatun then drops every session
    /// and restarts its UDP connection (see docs/wireguard.md, "Key
    /// rotation").
    pub(crate) async fn set_private_key(&self, key: &super::PrivateKey) -> Result<(), WgError> {
        let Some(device) = &self.device else {
            return Ok(());
        };
        device
            .set_private_key(key.secret())
            .await
            .map_err(|e| WgError::Userspace {
                device: self.name.clone(),
                op: "setting a new private key".into(),
                detail: e.to_string(),
            })
    }

    /// Stops the device, removes the socket, and waits (briefly) for the
    /// TUN link to go, so that the name can be opened again at once.
    pub(crate) async fn close(mut self) -> Result<(), WgError> {
        self.uapi = None;
        if let Some(device) = self.device.take() {
            device.stop().await;
        }
        let nl = Netlink::connect().map_err(|source| WgError::Netlink {
            device: self.name.clone(),
            op: "connecting to rtnetlink".into(),
            source,
        })?;
        let deadline = tokio::time::Instant::now() + LINK_GONE_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            match nl.link_by_name(&self.name).await {
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                _ => return Ok(()),
            }
        }
        tracing::warn!(device = %self.name, "the TUN link of a closed WireGuard device is still there");
        Ok(())
    }
}

impl Drop for UserspaceDevice {
    fn drop(&mut self) {
        self.uapi = None;
        if let Some(device) = self.device.take() {
            // gotatun stops its tasks from the runtime current at drop time;
            // make it the one the device runs on, whatever thread this is.
            let _runtime = self.runtime.enter();
            drop(device);
        }
    }
}

fn gota_networks(nets: &[IpNet]) -> Vec<IpNetwork> {
    networks(nets)
        .into_iter()
        .filter_map(|n| IpNetwork::new(n.network(), n.prefix_len()).ok())
        .collect()
}

fn peer_of(spec: &WgPeerSpec) -> Peer {
    let mut peer = Peer::new(PublicKey::from(spec.public_key.0))
        .with_endpoint(spec.endpoint)
        .with_allowed_ips(gota_networks(&spec.allowed_ips));
    if let Some(psk) = psk_of(spec.psk) {
        peer = peer.with_preshared_key(psk.0);
    }
    peer.keepalive = keepalive_of(spec.keepalive);
    peer
}

fn state_of(p: PeerStats, now: SystemTime) -> WgPeerState {
    WgPeerState {
        public_key: WgKey(p.peer.public_key.to_bytes()),
        endpoint: p.peer.endpoint,
        allowed_ips: p
            .peer
            .allowed_ips
            .iter()
            .filter_map(|n| IpNet::new(n.ip(), n.prefix()).ok().map(|n| n.trunc()))
            .collect(),
        psk: psk_of(p.peer.preshared_key.map(WgKey)),
        last_handshake: p.stats.last_handshake.and_then(|ago| now.checked_sub(ago)),
        rx_bytes: p.stats.rx_bytes as u64,
        tx_bytes: p.stats.tx_bytes as u64,
        keepalive: keepalive_of(p.peer.keepalive),
    }
}
