//! Errors of the netlink layer, sorted into the cases the reconciler acts on.
//!
//! The kernel answers every request with an errno and, since the socket asks
//! for extended acks, often a sentence of its own ("Nexthop has invalid
//! gateway"). Callers branch on a handful of cases (gone, already there, not
//! supported by this kernel) and log everything else; each error names the
//! operation so the log line alone says what weft was doing.

use std::io;

/// What went wrong talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The object does not exist (ENOENT, ENODEV, ESRCH; EADDRNOTAVAIL when
    /// deleting an address). Deleting something already gone lands here, so
    /// a caller converging to "absent" can treat it as success.
    #[error("{op}: not found ({message})")]
    NotFound { op: String, message: String },

    /// The object already exists (EEXIST): creating a link whose name is
    /// taken, adding an exclusive route that is already there.
    #[error("{op}: already exists")]
    Exists { op: String },

    /// The kernel lacks the feature (EOPNOTSUPP), most often a link kind
    /// whose module is not built or not loaded.
    #[error("{op}: not supported by this kernel ({message})")]
    NotSupported { op: String, message: String },

    /// Any other refusal by the kernel.
    #[error("{op}: {message}")]
    Kernel {
        op: String,
        errno: i32,
        message: String,
    },

    /// A netlink socket could not be opened or configured.
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] io::Error),

    /// `connect` was called outside a tokio runtime: the connection needs
    /// one to drive its socket.
    #[error("the netlink layer needs a tokio runtime: call Netlink::connect from within one")]
    NoRuntime,

    /// The connection's driver task is gone (runtime shut down), so the
    /// request never reached the kernel or its answer was lost.
    #[error("{op}: the netlink connection is closed")]
    ConnectionClosed { op: String },

    /// The kernel answered something this layer does not understand.
    #[error("{op}: unexpected answer from the kernel: {detail}")]
    Protocol { op: String, detail: String },

    /// The request was refused before reaching the kernel.
    #[error("{op}: {reason}")]
    InvalidInput { op: String, reason: String },
}

impl NetlinkError {
    /// Sorts a kernel errno (positive) into the variants above.
    pub(crate) fn from_errno(op: String, errno: i32, ext_ack: Option<&str>) -> NetlinkError {
        let mut message = io::Error::from_raw_os_error(errno).to_string();
        if let Some(said) = ext_ack.filter(|s| !s.is_empty()) {
            message.push_str(": ");
            message.push_str(said);
        }
        match errno {
            nix::libc::ENOENT | nix::libc::ENODEV | nix::libc::ESRCH => {
                NetlinkError::NotFound { op, message }
            }
            nix::libc::EEXIST => NetlinkError::Exists { op },
            nix::libc::EOPNOTSUPP => NetlinkError::NotSupported { op, message },
            _ => NetlinkError::Kernel { op, errno, message },
        }
    }

    /// A dump that the kernel flagged as interrupted by a concurrent change
    /// (NLM_F_DUMP_INTR) `tries` times in a row.
    pub(crate) fn dump_interrupted(op: String, tries: usize) -> NetlinkError {
        NetlinkError::Kernel {
            op,
            errno: nix::libc::EINTR,
            message: format!("dump interrupted by concurrent changes {tries} times in a row"),
        }
    }

    /// NLMSG_OVERRUN: `what` (the dump, the answer) overran the socket's
    /// receive buffer, so some of it was lost.
    pub(crate) fn overrun(op: String, what: &str) -> NetlinkError {
        NetlinkError::Kernel {
            op,
            errno: nix::libc::ENOBUFS,
            message: format!("the {what} overran the socket buffer"),
        }
    }

    /// True when the object was not there; see [`NetlinkError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, NetlinkError::NotFound { .. })
    }

    /// True when the object already existed; see [`NetlinkError::Exists`].
    pub fn is_exists(&self) -> bool {
        matches!(self, NetlinkError::Exists { .. })
    }

    /// True when the kernel lacks the feature; see
    /// [`NetlinkError::NotSupported`].
    pub fn is_not_supported(&self) -> bool {
        matches!(self, NetlinkError::NotSupported { .. })
    }

    /// The kernel's errno for a kernel refusal, when there was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Exists { .. } => Some(nix::libc::EEXIST),
            NetlinkError::NotSupported { .. } => Some(nix::libc::EOPNOTSUPP),
            _ => None,
        }
    }

    /// Rewrites the message of a `NotSupported` error to add a hint; used for
    /// link kinds, where the usual cause is a missing kernel module.
    pub(crate) fn with_support_hint(self, hint: &str) -> NetlinkError {
        match self {
            NetlinkError::NotSupported { op, message } => NetlinkError::NotSupported {
                op,
                message: format!("{message}; {hint}"),
            },
            other => other,
        }
    }

    /// Turns `Kernel` errors with the given errno into `NotFound`, for
    /// operations where that errno means "not there" (EADDRNOTAVAIL when
    /// deleting an address).
    pub(crate) fn errno_means_not_found(self, errno: i32) -> NetlinkError {
        match self {
            NetlinkError::Kernel {
                op,
                errno: e,
                message,
            } if e == errno => NetlinkError::NotFound { op, message },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_sort_into_cases() {
        let op = || "deleting route 10.244.2.0/24".to_string();
        assert!(NetlinkError::from_errno(op(), nix::libc::ESRCH, None).is_not_found());
        assert!(NetlinkError::from_errno(op(), nix::libc::ENOENT, None).is_not_found());
        assert!(NetlinkError::from_errno(op(), nix::libc::ENODEV, None).is_not_found());
        assert!(NetlinkError::from_errno(op(), nix::libc::EEXIST, None).is_exists());
        assert!(NetlinkError::from_errno(op(), nix::libc::EOPNOTSUPP, None).is_not_supported());
        let e = NetlinkError::from_errno(op(), nix::libc::ENETUNREACH, None);
        assert_eq!(e.errno(), Some(nix::libc::ENETUNREACH));
    }

    #[test]
    fn message_names_the_operation_and_the_kernel_reason() {
        let e = NetlinkError::from_errno(
            "adding route 10.244.2.0/24 via 10.244.2.0 dev 7".into(),
            nix::libc::ENETUNREACH,
            Some("Nexthop has invalid gateway"),
        );
        assert_eq!(
            e.to_string(),
            "adding route 10.244.2.0/24 via 10.244.2.0 dev 7: Network is unreachable (os error 101): Nexthop has invalid gateway"
        );
    }

    #[test]
    fn address_not_available_means_gone_when_deleting() {
        let e = NetlinkError::from_errno("deleting address".into(), nix::libc::EADDRNOTAVAIL, None)
            .errno_means_not_found(nix::libc::EADDRNOTAVAIL);
        assert!(e.is_not_found());
    }
}
