//! The one error type of the lab.
//!
//! Every variant's message names what was being done and, where there is
//! one, the remedy: a lab is run by people trying weft for the first time,
//! and "No such file or directory" alone tells them nothing.

use std::path::PathBuf;

use weft_dataplane::netlink::NetlinkError;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file or process operation failed.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },

    /// A system call (namespaces, mounts, signals) failed.
    #[error("{what}: {cause}")]
    Sys { what: String, cause: nix::Error },

    /// A netlink request failed.
    #[error("{what}: {cause}")]
    Netlink { what: String, cause: NetlinkError },

    /// The caller asked for something the lab cannot do (a bad name, an
    /// unknown node, too many nodes).
    #[error("{0}")]
    Invalid(String),

    /// Something the lab runs is not installed or not built.
    #[error("{0}")]
    Missing(String),

    /// No lab of that name exists.
    #[error("no lab named {name:?} ({path} does not exist); bring one up with `weft lab up{flag}`")]
    NoLab {
        name: String,
        path: PathBuf,
        flag: String,
    },

    /// An agent (or etcd) did not become ready; the tail of its log says why.
    #[error("{who} {problem}\n--- last lines of {} ---\n{tail}", log.display())]
    NotReady {
        who: String,
        problem: String,
        log: PathBuf,
        tail: String,
    },

    /// The CNI plugin refused to add or delete a pod.
    #[error("CNI {command} for pod {pod} failed: {detail}")]
    Cni {
        pod: String,
        command: &'static str,
        detail: String,
    },

    /// lab.json exists but cannot be understood.
    #[error("{} is not a lab state file weft understands: {detail}; `weft lab down --name {name}` still removes the lab", path.display())]
    BadState {
        name: String,
        path: PathBuf,
        detail: String,
    },

    /// A network namespace could not be entered or created.
    #[error("{what}: {cause}")]
    Netns {
        what: String,
        #[source]
        cause: weft_dataplane::netns::NetnsError,
    },
}

impl LabError {
    pub fn io(what: impl Into<String>, cause: std::io::Error) -> LabError {
        LabError::Io {
            what: what.into(),
            cause,
        }
    }

    pub(crate) fn sys(what: impl Into<String>, cause: nix::Error) -> LabError {
        LabError::Sys {
            what: what.into(),
            cause,
        }
    }

    pub(crate) fn netlink(what: impl Into<String>, cause: NetlinkError) -> LabError {
        LabError::Netlink {
            what: what.into(),
            cause,
        }
    }
}

/// Attaches "what was being done" to io results, as anyhow's `context`
/// does at binary edges.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, LabError>;
}

impl<T> IoContext<T> for Result<T, std::io::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, LabError> {
        self.map_err(|e| LabError::io(what(), e))
    }
}

impl<T> IoContext<T> for Result<T, NetlinkError> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, LabError> {
        self.map_err(|e| LabError::netlink(what(), e))
    }
}

impl<T> IoContext<T> for Result<T, nix::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, LabError> {
        self.map_err(|e| LabError::sys(what(), e))
    }
}
