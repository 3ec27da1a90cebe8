//! The key-value seam under the etcd and local stores.
//!
//! It is etcd's data model cut down to what leases need: keys with a create
//! and a modify revision, an optional time-to-live, compare-and-swap writes,
//! and a watch from a revision that reports when history was compacted.
//! Everything above it (allocation, renewal, snapshots) is written once.

use std::future::Future;
use std::time::Duration;

pub use crate::error::Cause;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was created; older leases win overlaps.
    pub create_rev: i64,
    /// Revision of the last write; compare-and-swap writes name it.
    pub mod_rev: i64,
    /// False for a key without time-to-live: a reservation, which never
    /// expires.
    pub expires: bool,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvEvent {
    Put(KvEntry),
    Delete { key: String, mod_rev: i64 },
}

/// How long a written key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Removed by the store unless written again within this time.
    For(Duration),
    /// Kept until deleted (a reservation).
    Forever,
}

/// Errors of the key-value layer. The message says what failed in the
/// store's terms; `source` keeps the error it came from (etcd-client's,
/// rusqlite's, an I/O error) for callers that look closer.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Connection lost, timeout, leader election: retry later.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        #[source]
        source: Option<Cause>,
    },
    /// A watch asked for history the store has discarded; list again.
    #[error("revision {requested} was compacted (oldest kept: {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// Retrying will not help (authentication, permissions, bad request).
    #[error("{detail}")]
    Refused {
        detail: String,
        #[source]
        source: Option<Cause>,
    },
}

impl KvError {
    pub fn unavailable(detail: impl Into<String>) -> KvError {
        KvError::Unavailable {
            detail: detail.into(),
            source: None,
        }
    }

    pub fn refused(detail: impl Into<String>) -> KvError {
        KvError::Refused {
            detail: detail.into(),
            source: None,
        }
    }

    /// The same error, caused by `cause`.
    pub fn because(self, cause: impl Into<Cause>) -> KvError {
        match self {
            KvError::Unavailable { detail, .. } => KvError::Unavailable {
                detail,
                source: Some(cause.into()),
            },
            KvError::Refused { detail, .. } => KvError::Refused {
                detail,
                source: Some(cause.into()),
            },
            compacted @ KvError::Compacted { .. } => compacted,
        }
    }

    /// Whether trying again (later, or after listing again) may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, KvError::Refused { .. })
    }
}

/// A listing: every key under a prefix at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub revision: i64,
    pub entries: Vec<KvEntry>,
}

/// A stream of changes under a prefix.
pub trait KvWatch: Send {
    /// The next batch of events, in revision order, with the store revision
    /// they bring us to.
    fn next(&mut self) -> impl Future<Output = Result<(i64, Vec<KvEvent>), KvError>> + Send;
}

/// The operations the lease logic needs from a datastore.
pub trait Kv: Send + Sync + 'static {
    /// `etcd` or `local`, for messages.
    fn name(&self) -> &'static str;

    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KvEntry>, KvError>> + Send;

    fn list(&self, prefix: &str) -> impl Future<Output = Result<Listing, KvError>> + Send;

    /// Creates `key` only if it does not exist and nothing under `dir`
    /// changed after `since_rev`: allocation is optimistic over the whole
    /// subnet directory, so two nodes can never take overlapping subnets even
    /// when their keys differ (`10.244.1.0-24` and `10.244.1.0-24&fd00::-64`).
    /// `Ok(false)` means another node got there first.
    fn create_if_unchanged(
        &self,
        dir: &str,
        since_rev: i64,
        key: &str,
        value: &[u8],
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, KvError>> + Send;

    /// Rewrites an existing key (value and a fresh TTL) if it is still at
    /// `mod_rev`. `Ok(false)` if it changed or vanished.
    fn replace(
        &self,
        key: &str,
        mod_rev: i64,
        value: &[u8],
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, KvError>> + Send;

    /// Deletes a key if it is still at `mod_rev`.
    fn delete(&self, key: &str, mod_rev: i64)
    -> impl Future<Output = Result<bool, KvError>> + Send;

    /// Watches every key under `prefix` from `from_rev` (inclusive).
    fn watch(
        &self,
        prefix: &str,
        from_rev: i64,
    ) -> impl Future<Output = Result<impl KvWatch, KvError>> + Send;
}
