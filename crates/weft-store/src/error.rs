//! Errors a lease store reports to the agent.

use ipnet::IpNet;
use weft_core::Family;
use weft_core::netconf::NetConfError;

use crate::kv::KvError;

/// The error a store failure came from (etcd-client's, rusqlite's, kube's,
/// an I/O error), kept as the `source` of [`StoreError`] and
/// [`KvError`]: the message already says what it means for the store,
/// the source is there for a caller that looks closer (downcasting, a
/// retry policy).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed. Each message names what went wrong and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The datastore did not answer; the caller retries.
    #[error("{store} is unreachable: {detail}")]
    Unavailable {
        store: &'static str,
        detail: String,
        #[source]
        source: Option<Cause>,
    },

    #[error("the network configuration is invalid: {0}")]
    Config(#[from] NetConfError),

    #[error(
        "no free {family} subnet left in {network}: all {capacity} subnets of /{subnet_len} \
         between SubnetMin {min} and SubnetMax {max} are leased. Grow the pool (a larger \
         SubnetLen gives more, smaller subnets; widen SubnetMin/SubnetMax or the Network) or \
         remove the leases of nodes that are gone"
    )]
    PoolExhausted {
        family: Family,
        network: IpNet,
        subnet_len: u8,
        min: std::net::IpAddr,
        max: std::net::IpAddr,
        capacity: String,
    },

    /// Our lease no longer exists in the store (expired, or deleted).
    #[error("our lease {key} no longer exists in the store")]
    LeaseGone { key: String },

    #[error("gave up acquiring a lease after {attempts} attempts lost to other nodes")]
    TooManyRaces { attempts: u32 },

    /// The store refused the request for a reason retrying will not fix
    /// (bad credentials, permissions, a malformed option).
    #[error("{store}: {detail}")]
    Refused {
        store: &'static str,
        detail: String,
        #[source]
        source: Option<Cause>,
    },
}

impl StoreError {
    pub fn unavailable(store: &'static str, detail: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            store,
            detail: detail.into(),
            source: None,
        }
    }

    pub fn refused(store: &'static str, detail: impl Into<String>) -> StoreError {
        StoreError::Refused {
            store,
            detail: detail.into(),
            source: None,
        }
    }

    /// The same error, caused by `cause` (for the two variants that keep
    /// one; the others are returned as they are).
    pub fn because(self, cause: impl Into<Cause>) -> StoreError {
        match self {
            StoreError::Unavailable { store, detail, .. } => StoreError::Unavailable {
                store,
                detail,
                source: Some(cause.into()),
            },
            StoreError::Refused { store, detail, .. } => StoreError::Refused {
                store,
                detail,
                source: Some(cause.into()),
            },
            other => other,
        }
    }

    /// A key-value error of the store named `store`, with its message and
    /// its source.
    pub(crate) fn from_kv(store: &'static str, e: KvError) -> StoreError {
        match e {
            KvError::Refused { detail, source } => StoreError::Refused {
                store,
                detail,
                source,
            },
            KvError::Unavailable { detail, source } => StoreError::Unavailable {
                store,
                detail,
                source,
            },
            compacted @ KvError::Compacted { .. } => {
                StoreError::unavailable(store, compacted.to_string())
            }
        }
    }

    /// Whether waiting and retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// [`StoreError::is_retryable`] under the name callers used first.
    pub fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}
