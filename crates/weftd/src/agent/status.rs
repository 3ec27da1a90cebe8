//! What the agent currently holds, shared with the local API and the
//! health server.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;
use weft_core::lease::Lease;
use weft_store::PeerSnapshot;

use super::metrics::Metrics;

/// Shared, cheaply cloned handle on the agent's state and its metrics.
#[derive(Clone, Default)]
pub struct StatusHandle(Arc<Mutex<State>>, Metrics);

#[derive(Default)]
struct State {
    store: &'static str,
    backend: String,
    ready: bool,
    lease: Option<Lease>,
    snapshot: Option<Arc<PeerSnapshot>>,
}

impl StatusHandle {
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
    }

    pub fn set_snapshot(&self, snapshot: Option<Arc<PeerSnapshot>>) {
        if let Some(s) = &snapshot {
            self.1.observe_snapshot(s);
        }
        self.lock().snapshot = snapshot;
    }

    /// Ready once subnet.env is written and the dataplane programmed:
    /// what `/readyz` reports.
    pub fn set_ready(&self, ready: bool) {
        if ready {
            self.1.set_ready();
        }
        self.lock().ready = ready;
    }

    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// The JSON view served to `weft status`.
    pub fn view(&self) -> StatusView {
        let s = self.lock();
        let now = SystemTime::now();
        StatusView {
            version: env!("CARGO_PKG_VERSION"),
            store: s.store,
            backend: s.backend.clone(),
            ready: s.ready,
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
                .flat_map(|x| x.peers.accepted.iter())
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
                    reason: r.reason.kind(),
                    detail: r.reason.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub version: &'static str,
    pub store: &'static str,
    pub backend: String,
    pub ready: bool,
    pub lease: Option<LeaseView>,
    pub snapshot_revision: Option<i64>,
    pub peers: Vec<PeerView>,
    pub skipped: Vec<SkippedView>,
}

#[derive(Debug, Serialize)]
pub struct LeaseView {
    pub subnets: Vec<String>,
    pub public_ip: Option<String>,
    pub public_ipv6: Option<String>,
    pub expires_in_secs: Option<u64>,
    pub reservation: bool,
}

#[derive(Debug, Serialize)]
pub struct PeerView {
    pub id: String,
    pub subnets: Vec<String>,
    pub public_ip: Option<String>,
    pub public_ipv6: Option<String>,
    pub backend_type: String,
}

#[derive(Debug, Serialize)]
pub struct SkippedView {
    pub id: String,
    pub reason: &'static str,
    pub detail: String,
}
