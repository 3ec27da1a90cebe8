//! WireGuard devices for the `wireguard` backend (flannel-compat §3.4), in
//! the kernel where the kernel has WireGuard, in process on TUN where not.
//!
//! Why two paths behind one handle: the kernel module is the fast path and
//! what flannel uses, but many kernels (these lab machines among them) lack
//! it; flannel then simply fails. weft falls back to gotatun, an in-process
//! userspace implementation, unless the operator forbids userspace crypto
//! ([`PathPolicy::KernelOnly`]). Everything above this module (planner,
//! reconciler, agent) sees one [`WgDevice`] and one peer model.
//!
//! What lives here, and what does not: the device itself, its private key and
//! listen port, and its peers. Addresses, routes and link state (up) are the
//! caller's, through [`crate::netlink::Netlink`], exactly as for the other
//! backends' devices.
//!
//! Peers are reconciled like routes ([`WgDevice::apply_peers`]): the actual
//! peers are read back, diffed against the desired ones, and only the
//! difference is applied; a second call with the same input changes nothing.
//! On the kernel path this means a restarted agent keeps the tunnel up (no
//! flush); the userspace device necessarily dies with the agent and is
//! re-created with all its peers by the first pass (well under a second for
//! hundreds of peers, see the `wireguard_bench` test).
//!
//! Key material (the private key, pre-shared keys) never reaches a log line,
//! an error message or a `Debug` output: the types here redact it.

mod device;
mod diff;
mod error;
mod kernel;
mod key;
mod key_rotation;
mod opening;
mod roaming;
mod types;
mod userspace;

pub use device::WgDevice;
pub use error::WgError;
#[cfg(feature = "test-hooks")]
pub use kernel::messages as kernel_messages;
pub use key::{PrivateKey, load_or_create_key};
pub use key_rotation::{
    Staged, key_made_at, remove_rotation_leftovers, rotate_key_file, stage_key_file,
};
pub use roaming::{LIVE_SESSION, session_is_live};
pub use types::{PathPolicy, PeerChanges, WgDeviceSpec, WgPath, WgPeerSpec, WgPeerState};

/// Where the userspace device serves the UAPI socket unless told otherwise:
/// the directory `wg` and `wg-quick` look in (compiled into wireguard-tools,
/// no environment variable changes it).
pub const DEFAULT_UAPI_DIR: &str = "/var/run/wireguard";
