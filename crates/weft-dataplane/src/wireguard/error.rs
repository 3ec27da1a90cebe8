//! Errors of the WireGuard layer.
//!
//! Each names the device (or the key file), what weft was doing, and where
//! possible what the operator can do about it. None ever carries key
//! material: messages are built from names, paths and kernel errnos only.

use std::io;
use std::path::PathBuf;

use crate::netlink::NetlinkError;

/// What went wrong with a WireGuard device or key.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// The kernel path was required and the kernel cannot provide it.
    #[error(
        "WireGuard device {device}: the kernel has no WireGuard module and PathPolicy is KernelOnly: \
         load the wireguard module (`modprobe wireguard`) or allow the userspace path ({detail})"
    )]
    KernelUnavailable { device: String, detail: String },

    /// A link with the device's name exists and cannot be used.
    #[error("WireGuard device {device}: a `{kind}` link of that name already exists: {fix}")]
    NameTaken {
        device: String,
        kind: String,
        fix: String,
    },

    /// The name is not a plain interface name (it also becomes a file name).
    #[error(
        "WireGuard device name {device:?} is not a valid interface name: use 1 to 15 letters, digits, '-', '_' or '.'"
    )]
    InvalidName { device: String },

    /// The kernel refused a request, or the connection to it failed.
    #[error("WireGuard device {device}: {op}: {source}")]
    Netlink {
        device: String,
        op: String,
        #[source]
        source: NetlinkError,
    },

    /// The kernel answered something this layer cannot read.
    #[error("WireGuard device {device}: unexpected answer from the kernel: {detail}")]
    Protocol { device: String, detail: String },

    /// The in-process implementation refused.
    #[error("WireGuard device {device} (userspace): {op}: {detail}")]
    Userspace {
        device: String,
        op: String,
        detail: String,
    },

    /// The UAPI socket could not be served.
    #[error("WireGuard device {device}: UAPI socket {}: {op}: {source}", path.display())]
    Uapi {
        device: String,
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The desired peers contradict themselves.
    #[error("WireGuard device {device}: refusing the desired peers: {reason}")]
    InvalidPeers { device: String, reason: String },

    /// The key file could not be read, written or fixed.
    #[error("WireGuard key file {}: {op}: {source}", path.display())]
    KeyFileIo {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The key file holds something that is not a key. Its content is never
    /// repeated: it may be a key in a wrong format.
    #[error(
        "WireGuard key file {} does not hold a private key (expected 44 characters of base64, \
         as `wg genkey` writes): restore the right file, or remove it to have a new key generated \
         (peers then learn the new public key from this node's lease)",
        path.display()
    )]
    KeyFileInvalid { path: PathBuf },
}
