//! The agent's WireGuard devices: the private key, which implementation
//! runs (kernel, or in-process userspace on TUN), and each device's peers
//! kept equal to the planner's, like routes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use weft_core::backend_data::WireguardData;
use weft_core::lease::LeaseAttrs;
use weft_core::netconf::{NetConfig, WireguardMode, WireguardOptions};
use weft_core::plan::{Desired, DeviceSpec, WgDevicePlan};
use weft_core::status::WgPeerView;
use weft_core::wg_key::WgKey;
use weft_dataplane::reconcile::Kernel;
use weft_dataplane::wireguard::{
    DEFAULT_UAPI_DIR, PathPolicy, PrivateKey, WgDevice, WgDeviceSpec, WgPeerSpec,
    load_or_create_key, remove_rotation_leftovers,
};

/// Makes a freshly started userspace device handshake with every peer at
/// once. Peers still hold a session with this node's previous device (the
/// agent restarted, the in-process device with it) and keep sending on it;
/// the new device cannot read that and would wait for the peers' own
/// rekey timers (seconds). A datagram towards each peer's subnet makes the
/// device initiate a handshake now, so traffic resumes within a round trip.
fn greet(plan: &WgDevicePlan) {
    let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0") else {
        return;
    };
    let v6 = std::net::UdpSocket::bind("[::]:0").ok();
    for peer in &plan.peers {
        for net in &peer.allowed_ips {
            // The discard port of the peer's subnet gateway address: the
            // packet only has to reach our tunnel, not to be answered.
            let target = std::net::SocketAddr::new(net.network(), 9);
            let sent = match target {
                std::net::SocketAddr::V4(_) => socket.send_to(&[0], target),
                std::net::SocketAddr::V6(_) => match &v6 {
                    Some(s) => s.send_to(&[0], target),
                    None => continue,
                },
            };
            if let Err(e) = sent {
                tracing::debug!(peer = %peer.peer, "cannot greet over WireGuard: {e}");
            }
        }
    }
    tracing::debug!(device = %plan.name, peers = plan.peers.len(), "greeted every peer to start handshakes");
}

/// flannel's key file, overridable with `WIREGUARD_KEY_FILE` as in flannel.
pub const DEFAULT_KEY_FILE: &str = "/run/flannel/wgkey";

/// Peer states as last read, shared with the status API.
pub type PeerViews = Arc<Mutex<Vec<WgPeerView>>>;

pub struct WireguardState {
    pub(super) key: PrivateKey,
    /// The key file: rotations replace it.
    pub(super) key_path: PathBuf,
    /// The ports published in the lease per family (`None`: family off).
    pub(super) publish: (Option<u16>, Option<u16>),
    /// Each open device's listen port, for a key switch.
    pub(super) ports: HashMap<String, u16>,
    /// Rotation progress, for `weft status` and the metrics.
    pub(super) rotation: super::wg_rotation::RotationState,
    psk: Option<WgKey>,
    policy: PathPolicy,
    uapi_dir: PathBuf,
    pub(super) devices: HashMap<String, WgDevice>,
    /// Devices opened empty whose peers have not been greeted yet.
    fresh: Vec<String>,
    views: PeerViews,
}

impl WireguardState {
    /// Loads (or makes) the key and says what this node publishes.
    pub fn prepare(
        cfg: &NetConfig,
        opts: &WireguardOptions,
        policy: PathPolicy,
        attrs: &mut LeaseAttrs,
    ) -> Result<WireguardState> {
        let path = std::env::var_os("WIREGUARD_KEY_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE));
        // A rotation killed before its commit point leaves a temporary
        // file: the old key stays (see weft-dataplane's key_rotation.rs).
        remove_rotation_leftovers(&path);
        let (key, created) = load_or_create_key(&path)
            .with_context(|| format!("cannot use the WireGuard key file {}", path.display()))?;
        if created {
            tracing::info!(path = %path.display(), "this node has a new WireGuard key: peers pick it up from its lease");
        }
        let public = key.public_key();
        let v6_port = match opts.mode {
            WireguardMode::Separate => opts.listen_port_v6,
            _ => opts.listen_port,
        };
        if cfg.enable_ipv4 {
            attrs.backend_data = Some(
                WireguardData {
                    public_key: public,
                    port: opts.listen_port,
                }
                .encode(),
            );
        }
        if cfg.enable_ipv6 {
            attrs.backend_v6_data = Some(
                WireguardData {
                    public_key: public,
                    port: v6_port,
                }
                .encode(),
            );
        }
        let publish = (
            cfg.enable_ipv4.then_some(opts.listen_port),
            cfg.enable_ipv6.then_some(v6_port),
        );
        let rotation = super::wg_rotation::RotationState::new(&path, None);
        Ok(WireguardState {
            key,
            key_path: path,
            publish,
            ports: HashMap::new(),
            rotation,
            psk: opts.psk.as_ref().map(|p| *p.key()),
            policy,
            uapi_dir: PathBuf::from(DEFAULT_UAPI_DIR),
            devices: HashMap::new(),
            fresh: Vec::new(),
            views: PeerViews::default(),
        })
    }

    pub fn views(&self) -> PeerViews {
        Arc::clone(&self.views)
    }

    /// Which implementation runs, for logs, metrics and `weft status`.
    pub fn path(&self) -> Option<String> {
        self.devices.values().next().map(|d| d.path().to_string())
    }

    /// Opens the desired devices (reusing a kernel device as it is) and,
    /// when `with_peers`, makes their peers equal to the plan. Before the
    /// first peer snapshot `with_peers` is false: an empty list must not
    /// wipe the peers a kernel device kept across a restart.
    pub async fn ensure(
        &mut self,
        nl: &impl Kernel,
        desired: &Desired,
        with_peers: bool,
    ) -> Result<()> {
        let plans: Vec<&WgDevicePlan> = desired
            .devices
            .iter()
            .filter_map(|d| match d {
                DeviceSpec::Wireguard(w) => Some(w),
                _ => None,
            })
            .collect();
        for plan in &plans {
            // A device deleted under us (by hand, or its TUN gone) leaves a
            // dead handle: drop it and open the device again.
            if self.devices.contains_key(&plan.name)
                && matches!(nl.link_by_name(&plan.name).await, Ok(None))
                && let Some(dead) = self.devices.remove(&plan.name)
            {
                tracing::warn!(device = %plan.name, "our WireGuard device was deleted; recreating it and every peer");
                let _ = dead.close().await;
            }
            if !self.devices.contains_key(&plan.name) {
                let spec = WgDeviceSpec {
                    name: plan.name.clone(),
                    listen_port: plan.listen_port,
                    mtu: plan.mtu,
                    private_key: self.key.clone(),
                };
                let device = WgDevice::open(&spec, self.policy, &self.uapi_dir)
                    .await
                    .with_context(|| format!("cannot open WireGuard device {}", plan.name))?;
                tracing::info!(device = %plan.name, path = %device.path(), port = plan.listen_port, "WireGuard device open");
                if device.path() == weft_dataplane::wireguard::WgPath::Userspace {
                    self.fresh.push(plan.name.clone());
                }
                self.devices.insert(plan.name.clone(), device);
                self.ports.insert(plan.name.clone(), plan.listen_port);
            }
            if !with_peers {
                continue;
            }
            let Some(device) = self.devices.get(&plan.name) else {
                continue;
            };
            let peers: Vec<WgPeerSpec> = plan
                .peers
                .iter()
                .map(|p| WgPeerSpec {
                    public_key: p.public_key,
                    endpoint: p.endpoint,
                    allowed_ips: p.allowed_ips.clone(),
                    psk: self.psk,
                    keepalive: p.keepalive,
                })
                .collect();
            match device.apply_peers(&peers).await {
                Ok(changes) if !changes.is_empty() => tracing::info!(
                    device = %plan.name,
                    added = changes.added,
                    updated = changes.updated,
                    removed = changes.removed,
                    "WireGuard peers updated"
                ),
                Ok(_) => {}
                Err(e) => {
                    self.fresh.retain(|f| f != &plan.name);
                    // A device deleted under us leaves a dead handle: drop
                    // it, and the next pass opens it again.
                    tracing::warn!(device = %plan.name, "cannot apply WireGuard peers: {e}; reopening the device");
                    if let Some(dead) = self.devices.remove(&plan.name) {
                        let _ = dead.close().await;
                    }
                }
            }
        }
        let unwanted: Vec<String> = self
            .devices
            .keys()
            .filter(|n| !plans.iter().any(|p| &p.name == *n))
            .cloned()
            .collect();
        for name in unwanted {
            if let Some(device) = self.devices.remove(&name) {
                let _ = device.close().await;
            }
        }
        Ok(())
    }

    /// Greets the peers of devices opened since the last call, once their
    /// addresses and routes are in place (call after the reconcile pass).
    pub fn greet_fresh(&mut self, desired: &Desired) {
        for d in &desired.devices {
            if let DeviceSpec::Wireguard(plan) = d
                && self.fresh.contains(&plan.name)
                && !plan.peers.is_empty()
            {
                greet(plan);
                self.fresh.retain(|f| f != &plan.name);
            }
        }
    }

    /// Starts the kernel sessions this node owes its peers (see
    /// weft-dataplane's `wireguard/opening.rs`): after every pass, once the
    /// devices are up, and on the WireGuard tick for peers whose other end
    /// did not start one in time.
    pub async fn open_sessions(&self) {
        for (name, device) in &self.devices {
            match device.open_sessions().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(device = %name, peers = n, "started WireGuard sessions"),
                Err(e) => tracing::warn!(device = %name, "cannot start WireGuard sessions: {e}"),
            }
        }
    }

    /// Reads every device's peers (handshakes, counters) for the status API.
    pub async fn refresh_views(&self, metrics: &super::metrics::Metrics) {
        let (views, elsewhere) = self.read_views().await;
        metrics.observe_wireguard(self.path().as_deref(), &views);
        metrics.peers_reached_elsewhere(i64::try_from(elsewhere).unwrap_or(i64::MAX));
        if let Ok(mut shared) = self.views.lock() {
            *shared = views;
        }
    }

    /// Every device's peers as the devices report them now, and how many
    /// are reached at another address than their lease's.
    pub(super) async fn read_views(&self) -> (Vec<WgPeerView>, usize) {
        let mut views = Vec::new();
        let mut elsewhere = 0;
        for (name, device) in &self.devices {
            let Ok(peers) = device.peers().await else {
                continue;
            };
            elsewhere += device.peers_reached_elsewhere(&peers);
            for p in peers {
                views.push(WgPeerView {
                    device: name.clone(),
                    public_key: p.public_key.to_string(),
                    endpoint: p.endpoint.map(|e| e.to_string()),
                    allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
                    last_handshake_unix: p
                        .last_handshake
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                });
            }
        }
        (views, elsewhere)
    }

    /// Stops userspace devices (kernel devices stay, with their peers, so a
    /// restart loses nothing; userspace ones cannot outlive the process).
    pub async fn close(self) {
        for (_, device) in self.devices {
            let _ = device.close().await;
        }
    }
}
