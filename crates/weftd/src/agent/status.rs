//! What the agent currently holds, shared with the local API and the
//! health server.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use weft_core::lease::{Lease, LeaseSubnets};
use weft_core::plan::{Desired, Dev, DeviceSpec, RouteTarget};
use weft_core::status::{
    DesiredView, DeviceView, FdbView, LeaseView, NeighView, PeerView, RouteView, SkippedView,
    StatusView, WgPeerWant,
};
use weft_store::PeerSnapshot;

use super::health::{self, HeldLease};
use super::metrics::Metrics;
use super::notify::Notifier;

/// Shared, cheaply cloned handle on the agent's state and its metrics.
#[derive(Clone, Default)]
pub struct StatusHandle(Arc<Mutex<State>>, Metrics);

#[derive(Default)]
struct State {
    store: &'static str,
    backend: String,
    /// The subnets subnet.env and the dataplane were last programmed for.
    programmed: Option<LeaseSubnets>,
    /// When the reconcile loop last finished a pass (`/healthz`).
    last_pass: Option<Instant>,
    /// systemd's socket, told `READY=1` the first time `/readyz` is 200.
    notifier: Notifier,
    notified_ready: bool,
    lease: Option<Lease>,
    snapshot: Option<Arc<PeerSnapshot>>,
    /// The last pass's desired state and the underlay's name, rendered
    /// into strings only when the status is asked for: rendering it on
    /// every pass cost a sixth of a pass's CPU at 5 000 peers.
    desired: Option<(Arc<Desired>, String)>,
    backend_detail: Option<String>,
    wireguard_path: Option<String>,
    wireguard: Option<super::wireguard::PeerViews>,
    ipsec: Option<super::ipsec::TunnelViews>,
    store_health: weft_store::HealthState,
    /// Where `weft wireguard rotate-key` requests go (the dataplane task).
    rotator: Option<tokio::sync::mpsc::Sender<super::wg_rotation::RotateReply>>,
    rotation: super::wg_rotation::RotationState,
    /// Where `weft public-ip` requests go (the dataplane task).
    public_ip: Option<tokio::sync::mpsc::Sender<super::wg_rotation::PublicIpRequest>>,
}

impl StatusHandle {
    /// A handle that tells `notifier` when the node first becomes ready
    /// (the default handle tells no one).
    pub fn new(notifier: Notifier) -> StatusHandle {
        let handle = StatusHandle::default();
        handle.lock().notifier = notifier;
        handle
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent
        // (every write is a plain assignment), so keep serving it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_identity(&self, store: &'static str, backend: &str) {
        let mut s = self.lock();
        s.store = store;
        s.backend = backend.to_owned();
    }

    pub fn metrics(&self) -> &Metrics {
        &self.1
    }

    pub fn set_lease(&self, lease: &Lease) {
        self.1.set_lease_expiry(lease.expiration);
        self.lock().lease = Some(lease.clone());
        self.notify_if_first_ready();
    }

    /// The store's health changed (see `store_health.rs`).
    pub fn set_store_health(&self, health: weft_store::HealthState) {
        self.1.observe_store_health(&health);
        self.lock().store_health = health;
    }

    pub fn set_snapshot(&self, snapshot: Option<Arc<PeerSnapshot>>) {
        if let Some(s) = &snapshot {
            self.1.observe_snapshot(s);
        }
        self.lock().snapshot = snapshot;
    }

    /// Records that subnet.env is written and the dataplane programmed
    /// for `subnets` (which also counts as a finished pass).
    pub fn set_programmed(&self, subnets: LeaseSubnets) {
        {
            let mut s = self.lock();
            s.programmed = Some(subnets);
            s.last_pass = Some(Instant::now());
        }
        self.notify_if_first_ready();
    }

    /// Records that the reconcile loop finished a pass (or woke and found
    /// nothing to program yet): what `/healthz` watches.
    pub fn pass_finished(&self) {
        self.lock().last_pass = Some(Instant::now());
    }

    /// `/healthz`: see [`health::liveness`]; the loop wakes at least every
    /// resync period.
    pub fn liveness(&self) -> Result<(), String> {
        let last_pass = self.lock().last_pass;
        health::liveness(last_pass, super::dataplane::RESYNC, Instant::now())
    }

    /// `/readyz`: see [`health::readiness`]. Also keeps the `weft_ready`
    /// gauge in step, since readiness changes with time alone.
    pub fn readiness(&self) -> Result<(), String> {
        let ready = Self::readiness_of(&self.lock());
        self.1.set_ready(ready.is_ok());
        ready
    }

    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    fn readiness_of(s: &State) -> Result<(), String> {
        let held = s.lease.as_ref().map(|l| HeldLease {
            subnets: l.subnets,
            expiration: l.expiration,
        });
        health::readiness(held.as_ref(), s.programmed.as_ref(), SystemTime::now())
    }

    /// Sends `READY=1` the first time the node is ready: subnet.env is
    /// written and the first pass done, the moment `/readyz` turns 200.
    fn notify_if_first_ready(&self) {
        let notifier = {
            let mut s = self.lock();
            if s.notified_ready || Self::readiness_of(&s).is_err() {
                return;
            }
            s.notified_ready = true;
            s.notifier.clone()
        };
        self.1.set_ready(true);
        notifier.ready();
    }

    /// Records what the last pass wanted, for `weft status` to compare with
    /// the kernel. `underlay` names the external interface.
    pub fn set_desired(&self, desired: Arc<Desired>, underlay: &str) {
        let previous = self.lock().desired.replace((desired, underlay.to_owned()));
        // Freed after the lock is released: a status request never waits
        // for thousands of entries to be dropped.
        drop(previous);
    }

    /// What the WireGuard devices run on, and where their peers are read.
    pub fn set_wireguard(&self, path: Option<String>, views: super::wireguard::PeerViews) {
        let mut s = self.lock();
        s.backend_detail = path.as_ref().map(|p| format!("{p} WireGuard"));
        s.wireguard_path = path;
        s.wireguard = Some(views);
    }

    /// Where the ipsec tunnels' states are read.
    pub fn set_ipsec(&self, views: super::ipsec::TunnelViews) {
        let mut s = self.lock();
        s.backend_detail = Some("kernel ESP, strongSwan charon".into());
        s.ipsec = Some(views);
    }

    /// Where rotation requests go: the dataplane task, which owns the
    /// devices.
    pub fn set_rotator(&self, tx: tokio::sync::mpsc::Sender<super::wg_rotation::RotateReply>) {
        self.lock().rotator = Some(tx);
    }

    /// Asks the dataplane task to rotate the WireGuard key and waits for
    /// the switch: the new public key, or why not.
    pub async fn request_rotation(&self) -> Result<String, String> {
        let Some(tx) = self.lock().rotator.clone() else {
            return Err(
                "this node does not run the wireguard backend (or is not ready yet)".into(),
            );
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(reply)
            .await
            .map_err(|_| "the agent is shutting down".to_string())?;
        answer
            .await
            .map_err(|_| "the agent stopped before answering".to_string())?
    }

    /// Where requests to publish another public address go.
    pub fn set_public_ip_requests(
        &self,
        tx: tokio::sync::mpsc::Sender<super::wg_rotation::PublicIpRequest>,
    ) {
        self.lock().public_ip = Some(tx);
    }

    /// Asks the dataplane task to publish `addr` as this node's public
    /// address (a NAT mapping that moved): what was published, or why not.
    pub async fn request_public_ip(&self, addr: std::net::IpAddr) -> Result<String, String> {
        let Some(tx) = self.lock().public_ip.clone() else {
            return Err("the agent is not ready yet".into());
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send((addr, reply))
            .await
            .map_err(|_| "the agent is shutting down".to_string())?;
        answer
            .await
            .map_err(|_| "the agent stopped before answering".to_string())?
    }

    pub fn set_rotation(&self, rotation: &super::wg_rotation::RotationState) {
        self.1.observe_key_age(rotation.key_made);
        self.lock().rotation = rotation.clone();
    }

    /// The JSON view served to `weft status`.
    pub fn view(&self) -> StatusView {
        let s = self.lock();
        let now = SystemTime::now();
        StatusView {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store: s.store.to_owned(),
            backend: s.backend.clone(),
            ready: Self::readiness_of(&s).is_ok(),
            lease: s.lease.as_ref().map(|l| LeaseView {
                subnets: l.subnets.iter().map(|n| n.to_string()).collect(),
                public_ip: l.attrs.public_ip.map(|a| a.to_string()),
                public_ipv6: l.attrs.public_ipv6.map(|a| a.to_string()),
                expires_in_secs: l
                    .expiration
                    .map(|e| e.duration_since(now).map_or(0, |d| d.as_secs())),
                reservation: l.expiration.is_none(),
            }),
            snapshot_revision: s.snapshot.as_ref().map(|x| x.revision),
            peers: s
                .snapshot
                .iter()
                .flat_map(|x| x.accepted())
                .map(|(id, l)| PeerView {
                    id: id.clone(),
                    subnets: l.subnets.iter().map(|n| n.to_string()).collect(),
                    public_ip: l.attrs.public_ip.map(|a| a.to_string()),
                    public_ipv6: l.attrs.public_ipv6.map(|a| a.to_string()),
                    backend_type: l.attrs.backend_type.clone(),
                })
                .collect(),
            skipped: s
                .snapshot
                .iter()
                .flat_map(|x| x.peers.rejected.iter())
                .map(|r| SkippedView {
                    id: r.id.clone(),
                    reason: r.reason.kind().to_owned(),
                    detail: r.reason.to_string(),
                })
                .collect(),
            desired: s.desired.as_ref().map(|(d, name)| desired_view(d, name)),
            backend_detail: s.backend_detail.clone(),
            wireguard_path: s.wireguard_path.clone(),
            wireguard_peers: s
                .wireguard
                .as_ref()
                .and_then(|v| v.lock().ok().map(|v| v.clone()))
                .unwrap_or_default(),
            store_outage: super::store_health::outage_view(&s.store_health, now),
            wireguard_key_made_unix: s
                .rotation
                .key_made
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            wireguard_key_rotation_in_progress: s.rotation.in_progress_since.is_some(),
            ipsec_tunnels: s
                .ipsec
                .as_ref()
                .and_then(|v| v.lock().ok().map(|v| v.clone()))
                .unwrap_or_default(),
        }
    }
}

fn desired_view(d: &Desired, underlay: &str) -> DesiredView {
    DesiredView {
        mtu: d.mtu,
        devices: d
            .devices
            .iter()
            .map(|dev| match dev {
                DeviceSpec::Vxlan(v) => DeviceView {
                    name: v.name.clone(),
                    kind: "vxlan".into(),
                    mtu: v.mtu,
                    address: v.address.to_string(),
                },
                DeviceSpec::Ipip(i) => DeviceView {
                    name: i.name.clone(),
                    kind: "ipip".into(),
                    mtu: i.mtu,
                    address: i.address.to_string(),
                },
                DeviceSpec::Wireguard(w) => DeviceView {
                    name: w.name.clone(),
                    kind: "wireguard".into(),
                    mtu: w.mtu,
                    address: w
                        .addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                },
            })
            .collect(),
        routes: d
            .routes
            .iter()
            .map(|r| match &r.target {
                RouteTarget::Link { dev } => RouteView {
                    dst: r.dst.to_string(),
                    via: None,
                    dev: Some(match dev {
                        Dev::Underlay => underlay.to_owned(),
                        Dev::Named(n) => n.clone(),
                    }),
                    onlink: false,
                    blackhole: false,
                },
                RouteTarget::Blackhole => RouteView {
                    dst: r.dst.to_string(),
                    via: None,
                    dev: None,
                    onlink: false,
                    blackhole: true,
                },
                RouteTarget::Via {
                    gateway,
                    dev,
                    onlink,
                } => RouteView {
                    dst: r.dst.to_string(),
                    via: Some(gateway.to_string()),
                    dev: Some(match dev {
                        Dev::Underlay => underlay.to_owned(),
                        Dev::Named(n) => n.clone(),
                    }),
                    onlink: *onlink,
                    blackhole: false,
                },
            })
            .collect(),
        neighbours: d
            .neighbours
            .iter()
            .map(|n| NeighView {
                dev: n.dev.clone(),
                ip: n.ip.to_string(),
                mac: n.mac.to_string(),
            })
            .collect(),
        fdb: d
            .fdb
            .iter()
            .map(|f| FdbView {
                dev: f.dev.clone(),
                mac: f.mac.to_string(),
                dst: f.dst.to_string(),
            })
            .collect(),
        wireguard: d
            .devices
            .iter()
            .filter_map(|dev| match dev {
                DeviceSpec::Wireguard(w) => Some(w),
                _ => None,
            })
            .flat_map(|w| {
                w.peers.iter().map(|p| WgPeerWant {
                    device: w.name.clone(),
                    peer: p.peer.clone(),
                    public_key: p.public_key.to_string(),
                    endpoint: p.endpoint.to_string(),
                    allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
                })
            })
            .collect(),
        unprogrammed: d
            .skipped
            .iter()
            .map(|(id, why)| SkippedView {
                id: id.clone(),
                reason: "not_programmed".into(),
                detail: why.clone(),
            })
            .collect(),
    }
}
