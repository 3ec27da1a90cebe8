//! Where the control-plane benchmarks write their synthetic peers: etcd
//! keys ([`Store`]) or Node objects in the Kubernetes API test server
//! ([`super::kube_api::KubeApi`]). The measurements (new peer → route, CPU
//! per pass) are written once, over this seam.

use std::time::Instant;

use anyhow::Result;

use super::leases::{self, Peer};
use super::store::Store;

/// When one write left and when the store confirmed it: the baseline of a
/// new peer's latency (etcd: a watch in the benchmark heard of it;
/// Kubernetes: the API server answered the create).
#[derive(Debug, Clone, Copy)]
pub struct TimedPut {
    pub sent: Instant,
    pub confirmed: Instant,
}

/// The writes a control-plane measurement makes.
pub trait Feed {
    /// Adds `peer` as a new peer, timed.
    fn add_timed(&self, peer: &Peer) -> Result<TimedPut>;

    /// Removes `peers` (the one-off samples).
    fn remove(&self, peers: &[Peer]) -> Result<()>;

    /// The `n`-th write that changes nothing a peer snapshot holds: an
    /// existing peer's renewal. The store side alone runs; no pass follows.
    fn renew(&self, peer: &Peer, n: usize) -> Result<()>;

    /// The `n`-th new version of a peer every agent skips: it changes only
    /// the snapshot's skipped counter, so the agent runs a full pass that
    /// changes nothing in the kernel.
    fn skip(&self, n: usize) -> Result<()>;

    /// Removes what [`Feed::skip`] wrote.
    fn unskip(&self) -> Result<()>;
}

/// etcd: flannel's keys and values.
impl Feed for Store {
    fn add_timed(&self, peer: &Peer) -> Result<TimedPut> {
        self.timed_put(peer.key(), peer.value())
    }

    fn remove(&self, peers: &[Peer]) -> Result<()> {
        for p in peers {
            self.delete_prefix(&p.key())?;
        }
        Ok(())
    }

    /// The lease rewritten with its same value.
    fn renew(&self, peer: &Peer, _n: usize) -> Result<()> {
        self.put(vec![(peer.key(), peer.value())])
    }

    /// Another backend's lease rewritten with its same value: each write
    /// is a new revision, warned about and counted once.
    fn skip(&self, _n: usize) -> Result<()> {
        let (key, value) = leases::rejected();
        self.put(vec![(key, value)])
    }

    fn unskip(&self) -> Result<()> {
        self.delete_prefix(&leases::rejected().0)
    }
}
