//! The CNI spec's error result: what the runtime (kubelet through containerd
//! or CRI-O) shows the user when a pod cannot get a network, so every
//! message names the input, the problem and, where there is one, the fix.

use std::fmt;

use serde_json::{Value, json};

/// The spec's well-known error codes (CNI spec, "Error" section). flannel's
/// plugin answers 999 for almost everything; weft picks the precise code so
/// a runtime can tell "retry later" (11) from "fix your config" (7).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (`CNI_*`).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content (stdin, a delegate's output).
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_NETCONF: u32 = 7;
    /// Try again later: a transient condition such as the agent not having
    /// written subnet.env yet.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot service ADD requests (spec 1.1).
    pub const NOT_AVAILABLE: u32 = 50;
    /// flannel's generic "internal" code; used only when a delegate failed
    /// without saying why.
    pub const INTERNAL: u32 = 999;
}

/// An error to print on stdout as the spec's error JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The spec's error object. `cni_version` is the version of the request
    /// (the error is a result of that version).
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// What the crate's tests check of an error.
#[cfg(test)]
impl CniError {
    /// Fails the test unless the message says `text`.
    #[track_caller]
    pub(crate) fn assert_msg_has(&self, text: &str) {
        assert!(self.msg.contains(text), "{}", self.msg);
    }

    /// Fails the test unless this is a `code` error whose message says `text`.
    #[track_caller]
    pub(crate) fn assert_says(&self, code: u32, text: &str) {
        assert_eq!(self.code, code, "{}", self.msg);
        self.assert_msg_has(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_spec_shape() {
        let e = CniError::new(code::INVALID_NETCONF, "bad").with_details("why");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "why"})
        );
        assert_eq!(e.to_string(), "[7] bad (why)");
    }
}
