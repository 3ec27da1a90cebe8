//! weft's pure core.
//!
//! Everything here is a decision or a format: parsing and validating
//! net-conf.json, prefix arithmetic, choosing a free subnet, the lease formats
//! flannel writes to etcd, and the bytes of subnet.env. Nothing here performs
//! I/O, spawns tasks or needs root, so all of it is tested in plain unit tests
//! and the edges (stores, kernel, HTTP) stay thin translators.

pub mod alloc;
pub mod backend_data;
pub mod cni_conflist;
pub mod etcd_key;
pub mod fast_hash;
pub mod lease;
pub mod mac;
pub mod netconf;
pub mod offload_policy;
pub mod peer;
pub mod plan;
pub mod prefix;
pub mod status;
pub mod subnet_env;
#[cfg(test)]
mod test_leases;
pub mod wg_key;

pub use prefix::Family;
