//! Errors a lease store reports to the agent.

use ipnet::IpNet;
use weft_core::Family;
use weft_core::netconf::NetConfError;

/// Why a store operation failed. Each message names what went wrong and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The datastore did not answer; the caller retries.
    #[error("{store} is unreachable: {detail}")]
    Unavailable { store: &'static str, detail: String },

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
    Refused { store: &'static str, detail: String },
}

impl StoreError {
    /// Whether waiting and retrying may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
