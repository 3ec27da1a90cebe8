//! Lease stores: where nodes record which subnet each holds.
//!
//! The agent talks to one [`LeaseStore`] and does not know which it is. The
//! etcd and local stores share all their logic (allocation, renewal, peer
//! snapshots) through the small [`kv::Kv`] seam, so both follow exactly the
//! same contract and are tested by the same suite. Every store, the
//! Kubernetes one included, turns its peers into snapshots through one
//! publisher (`publisher.rs`): each entry checked once when it changes,
//! screened oldest first, a skipped one warned about once per version.

mod acquire;
mod backoff;
mod error;
pub mod etcd;
mod etcd_members;
mod health;
pub mod kube;
pub mod kv;
mod kv_store;
pub mod local;
mod outage;
mod peer_watch;
mod publisher;
mod random;
mod warm;

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::NetConfig;
use weft_core::peer::ScreenedPeers;

pub use error::StoreError;
pub use health::{HealthState, StoreHealth};
pub use kv_store::{ConfigSource, KvLeaseStore};

/// flannel's lease lifetime: a node that stops renewing loses its subnet
/// after a day.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What the agent asks for when it takes a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireRequest {
    /// What this node publishes (public IPs, backend type and data).
    pub attrs: LeaseAttrs,
    /// The subnets named in the previous subnet.env, tried before a fresh
    /// choice so that a node keeps its pods' addresses across restarts.
    pub previous: LeaseSubnets,
}

/// Every peer lease at one store revision, already screened: the accepted
/// ones are safe to program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub revision: i64,
    /// Shared: an early snapshot reuses its predecessor's.
    pub peers: Arc<ScreenedPeers>,
    /// Whether our own lease was present at this revision. When it goes
    /// missing (expired, or deleted by an operator) the agent re-acquires.
    pub own_present: bool,
    /// Peer leases skipped since the watch started, by reason
    /// ([`weft_core::peer::PeerRejection::kind`]); each entry counts once per
    /// revision of it.
    pub skipped_total: std::collections::BTreeMap<String, u64>,
    /// Times the watch had to start over since it began, by reason:
    /// `relist` (history compacted, 410 Gone: everything listed again) or
    /// `error` (connection lost: resumed from the last revision seen).
    /// Published with the first snapshot after the watch is back, so an
    /// operator can alert on a store that keeps dropping the agent.
    pub watch_restarts: std::collections::BTreeMap<String, u64>,
    /// Leases that arrived since the snapshot before, on an *early*
    /// snapshot: new peers (or peers newly passing their checks) that
    /// overlap nothing, published the moment their event is read, ahead of
    /// screening every lease again. An early snapshot shares `peers` with
    /// the snapshot before it (nothing is copied, so it costs the same
    /// however many peers there are) and the full snapshot follows at
    /// once; the agent programs the newcomers' entries and waits for it.
    /// Empty on every full snapshot. [`PeerSnapshot::accepted`] gives every
    /// accepted lease either way.
    pub arrived: Vec<(String, weft_core::lease::Lease)>,
}

impl PeerSnapshot {
    /// Whether this is an early snapshot (see [`PeerSnapshot::arrived`]).
    pub fn is_early(&self) -> bool {
        !self.arrived.is_empty()
    }

    /// Every lease this snapshot accepts: the screened ones and, on an
    /// early snapshot, the newcomers.
    pub fn accepted(&self) -> impl Iterator<Item = &(String, weft_core::lease::Lease)> {
        self.peers.accepted.iter().chain(&self.arrived)
    }

    /// How many leases this snapshot accepts.
    pub fn accepted_count(&self) -> usize {
        self.peers.accepted.len() + self.arrived.len()
    }
}

/// The channel snapshots are published on. `None` until the first listing
/// succeeds: "no answer yet" must never look like "no peers".
pub type SnapshotSender = watch::Sender<Option<Arc<PeerSnapshot>>>;

/// The seam between the agent and a datastore.
pub trait LeaseStore: Send + Sync + 'static {
    /// Short name for logs and metrics: `etcd`, `local`, `kube`.
    fn kind(&self) -> &'static str;

    /// The cluster's net-conf.json, parsed and validated. Waits, retrying
    /// with backoff and logging each wait, until the config exists.
    fn network_config(&self) -> impl Future<Output = Result<NetConfig, StoreError>> + Send;

    /// Public addresses the store assigns to this node, which override
    /// `--public-ip`/`--public-ipv6` (flannel's `node-public-ip` annotations
    /// in Kubernetes mode). Stores without such a notion return none.
    fn stored_public_ips(
        &self,
    ) -> impl Future<Output = Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), StoreError>> + Send {
        async { Ok((None, None)) }
    }

    /// What this node published last time (matched by public IP), so that
    /// the VTEP MAC survives a reboot that removed the device.
    fn previous_attrs(
        &self,
        public_ip: Option<Ipv4Addr>,
        public_ipv6: Option<Ipv6Addr>,
    ) -> impl Future<Output = Result<Option<LeaseAttrs>, StoreError>> + Send;

    /// Takes a lease: our existing one if the store still holds it, else the
    /// previous subnet, else a free one. Losing a race to another node means
    /// choosing again, never failing.
    fn acquire(
        &self,
        cfg: &NetConfig,
        req: &AcquireRequest,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Extends our lease. [`StoreError::LeaseGone`] when it no longer exists.
    fn renew(&self, lease: &Lease) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Gives the subnet back (an operator draining a node for good).
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Publishes a snapshot of every peer after each change, until `tx` has
    /// no receivers. Store outages are retried inside: the last snapshot
    /// stays current meanwhile.
    fn watch_peers(
        &self,
        cfg: NetConfig,
        own: LeaseSubnets,
        tx: SnapshotSender,
    ) -> impl Future<Output = ()> + Send;

    /// Whether the peer watch can follow the store now (an outage begins
    /// at its first failure and ends when it works again). Stores that do
    /// not report it are always healthy here.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }
}
