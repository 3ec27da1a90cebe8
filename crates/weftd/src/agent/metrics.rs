//! `/metrics` in Prometheus/OpenMetrics text: what an operator alerts on
//! (lease about to lapse, peers skipped, reconcile failing or slow).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use weft_dataplane::reconcile::ApplyReport;
use weft_store::PeerSnapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WgPeerLabel {
    pub device: String,
    pub public_key: String,
}

/// Every metric weftd exports. Cheap to clone (all fields are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    lease_expiry: Gauge,
    ready: Gauge,
    peers: Gauge,
    peers_skipped: Family<ReasonLabel, Gauge>,
    peer_leases_skipped: Family<ReasonLabel, Counter>,
    watch_restarts: Family<ReasonLabel, Counter>,
    passes: Counter,
    pass_errors: Counter,
    pass_seconds: Histogram,
    changes: Family<KindLabel, Counter>,
    rules_repairs: Counter,
    wireguard_path: Family<PathLabel, Gauge>,
    handshake_age: Family<WgPeerLabel, Gauge>,
    store_available: Gauge,
    store_outages: Counter,
    key_rotations: Counter,
    key_age: Gauge,
    address_changes: Counter,
    reached_elsewhere: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Moves each counter up to the store's running total for its reason.
/// The store counts from its watch's start, which is also the agent's.
fn catch_up(family: &Family<ReasonLabel, Counter>, totals: &BTreeMap<String, u64>) {
    for (reason, total) in totals {
        let counter = family.get_or_create(&ReasonLabel {
            reason: reason.clone(),
        });
        let seen = counter.get();
        if *total > seen {
            counter.inc_by(total - seen);
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weft");
        let lease_expiry = Gauge::default();
        registry.register(
            "lease_expiry_timestamp_seconds",
            "When this node's lease lapses unless renewed (0 for a reservation)",
            lease_expiry.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 once subnet.env is written and the rules are in place",
            ready.clone(),
        );
        let peers = Gauge::default();
        registry.register(
            "peers",
            "Peer leases programmed into the dataplane",
            peers.clone(),
        );
        let peers_skipped = Family::<ReasonLabel, Gauge>::default();
        registry.register(
            "peers_skipped",
            "Peer leases currently left out because they failed validation, by reason",
            peers_skipped.clone(),
        );
        let peer_leases_skipped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "peer_leases_skipped",
            "Invalid peer lease revisions seen since start, by reason",
            peer_leases_skipped.clone(),
        );
        let watch_restarts = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "store_watch_restarts",
            "Times the store's peer watch started over: relist (history compacted, 410 Gone) or error (connection lost)",
            watch_restarts.clone(),
        );
        let passes = Counter::default();
        registry.register("reconcile_passes", "Reconcile passes run", passes.clone());
        let pass_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed or left entries unapplied",
            pass_errors.clone(),
        );
        let pass_seconds = Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile pass",
            pass_seconds.clone(),
        );
        let changes = Family::<KindLabel, Counter>::default();
        registry.register(
            "kernel_changes",
            "Kernel objects changed by reconcile passes, by kind",
            changes.clone(),
        );
        let rules_repairs = Counter::default();
        registry.register(
            "rules_repairs",
            "Times the masquerade/forward rules were found changed and restored",
            rules_repairs.clone(),
        );
        let wireguard_path = Family::<PathLabel, Gauge>::default();
        registry.register(
            "wireguard_path",
            "1 for the WireGuard implementation in use (kernel or userspace)",
            wireguard_path.clone(),
        );
        let handshake_age = Family::<WgPeerLabel, Gauge>::default();
        registry.register(
            "wireguard_peer_handshake_age_seconds",
            "Seconds since each WireGuard peer's last handshake (-1: never); over 180 means the tunnel is down",
            handshake_age.clone(),
        );
        let store_available = Gauge::default();
        store_available.set(1);
        registry.register(
            "store_available",
            "1 while the peer watch follows the lease store, 0 during an outage (no quorum, unreachable): the dataplane is kept as it was meanwhile",
            store_available.clone(),
        );
        let store_outages = Counter::default();
        registry.register(
            "store_outages",
            "Lease store outages since start (one per outage, however long)",
            store_outages.clone(),
        );
        let key_rotations = Counter::default();
        registry.register(
            "wireguard_key_rotations",
            "WireGuard key rotations this agent completed the switch of (weft wireguard rotate-key, or the schedule)",
            key_rotations.clone(),
        );
        let key_age = Gauge::default();
        registry.register(
            "wireguard_key_age_seconds",
            "Seconds since this node's WireGuard key was made or last rotated (the key file's age)",
            key_age.clone(),
        );
        let address_changes = Counter::default();
        registry.register(
            "external_address_changes",
            "Times the external interface was renumbered and the agent followed it without a restart",
            address_changes.clone(),
        );
        let reached_elsewhere = Gauge::default();
        registry.register(
            "wireguard_peers_reached_elsewhere",
            "WireGuard peers with a live session at another address than their lease's (roamed: behind a NAT that rewrites ports, or a stale --public-ip)",
            reached_elsewhere.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            address_changes,
            reached_elsewhere,
            store_available,
            store_outages,
            key_rotations,
            key_age,
            wireguard_path,
            handshake_age,
            lease_expiry,
            ready,
            peers,
            peers_skipped,
            peer_leases_skipped,
            watch_restarts,
            passes,
            pass_errors,
            pass_seconds,
            changes,
            rules_repairs,
        }
    }

    pub fn set_lease_expiry(&self, expiration: Option<SystemTime>) {
        let secs = expiration
            .and_then(|e| e.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        self.lease_expiry.set(secs);
    }

    /// Follows the store's health: availability, and outages counted up
    /// to the store's own total.
    pub fn observe_store_health(&self, health: &weft_store::HealthState) {
        self.store_available
            .set(i64::from(health.unavailable_since.is_none()));
        let seen = self.store_outages.get();
        if health.outages > seen {
            self.store_outages.inc_by(health.outages - seen);
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn observe_snapshot(&self, snapshot: &PeerSnapshot) {
        self.peers.set(snapshot.accepted_count() as i64);
        self.peers_skipped.clear();
        for r in &snapshot.peers.rejected {
            self.peers_skipped
                .get_or_create(&ReasonLabel {
                    reason: r.reason.kind().to_owned(),
                })
                .inc();
        }
        catch_up(&self.peer_leases_skipped, &snapshot.skipped_total);
        catch_up(&self.watch_restarts, &snapshot.watch_restarts);
    }

    pub fn observe_pass(&self, took: Duration, report: Option<&ApplyReport>) {
        self.passes.inc();
        self.pass_seconds.observe(took.as_secs_f64());
        match report {
            Some(r) => {
                if !r.errors.is_empty() {
                    self.pass_errors.inc();
                }
                for (kind, n) in r.by_kind() {
                    if n > 0 {
                        self.changes
                            .get_or_create(&KindLabel {
                                kind: kind.to_owned(),
                            })
                            .inc_by(u64::from(n));
                    }
                }
            }
            None => {
                self.pass_errors.inc();
            }
        }
    }

    /// The WireGuard path and every peer's handshake age.
    pub fn observe_wireguard(&self, path: Option<&str>, peers: &[weft_core::status::WgPeerView]) {
        self.wireguard_path.clear();
        if let Some(p) = path {
            self.wireguard_path
                .get_or_create(&PathLabel { path: p.to_owned() })
                .set(1);
        }
        self.handshake_age.clear();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for p in peers {
            let age = p
                .last_handshake_unix
                .map_or(-1, |t| now.saturating_sub(t) as i64);
            self.handshake_age
                .get_or_create(&WgPeerLabel {
                    device: p.device.clone(),
                    public_key: p.public_key.clone(),
                })
                .set(age);
        }
    }

    pub fn peers_reached_elsewhere(&self, n: i64) {
        self.reached_elsewhere.set(n);
    }

    pub fn address_changed(&self) {
        self.address_changes.inc();
    }

    pub fn key_rotated(&self) {
        self.key_rotations.inc();
    }

    /// Seconds since `made` (the key file's time), at each WireGuard tick.
    pub fn observe_key_age(&self, made: Option<SystemTime>) {
        if let Some(age) = made.and_then(|m| SystemTime::now().duration_since(m).ok()) {
            self.key_age.set(age.as_secs() as i64);
        }
    }

    pub fn rules_repaired(&self) {
        self.rules_repairs.inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_with_total_suffix_and_eof() {
        let m = Metrics::new();
        let report = ApplyReport {
            routes_set: 3,
            ..ApplyReport::default()
        };
        m.observe_pass(Duration::from_millis(2), Some(&report));
        m.set_ready(true);
        let text = m.encode();
        assert!(text.contains("weft_reconcile_passes_total 1"), "{text}");
        assert!(
            text.contains("weft_kernel_changes_total{kind=\"route_set\"} 3"),
            "{text}"
        );
        assert!(text.contains("weft_ready 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
