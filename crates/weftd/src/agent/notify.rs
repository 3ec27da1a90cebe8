//! systemd's readiness protocol (sd_notify): `READY=1` once the node can
//! serve pods, `STOPPING=1` when asked to stop. flanneld sends both, so a
//! unit written for it (`Type=notify`) would otherwise time out on weftd.
//!
//! The protocol is one datagram per message to the unix socket named by
//! `$NOTIFY_SOCKET`: a path, or an abstract name written `@name`. Without
//! the variable (not started by systemd, or not `Type=notify`) nothing is
//! sent. A message that cannot be sent is logged and otherwise ignored:
//! systemd then times the unit out, which says more than an agent that
//! refuses to run.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where notifications go; cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notifier(Option<Target>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// The name without its leading `@` (a NUL byte on the wire).
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The socket of `$NOTIFY_SOCKET`, if set.
    pub fn from_env() -> Notifier {
        Notifier::from_value(std::env::var_os(NOTIFY_SOCKET))
    }

    /// The socket a `$NOTIFY_SOCKET` value names; an empty value is unset.
    pub fn from_value(value: Option<OsString>) -> Notifier {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Notifier(None);
        };
        let bytes = value.as_bytes();
        Notifier(Some(match bytes.strip_prefix(b"@") {
            Some(name) => Target::Abstract(name.to_vec()),
            None => Target::Path(PathBuf::from(value)),
        }))
    }

    /// `READY=1`: subnet.env is written and the dataplane programmed.
    pub fn ready(&self) {
        self.notify("READY=1");
    }

    /// `STOPPING=1`: shutdown was asked for.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// Sends `state`; a failure is a warning, never an error.
    pub fn notify(&self, state: &str) {
        match self.send(state) {
            Ok(false) => {}
            Ok(true) => tracing::debug!(state, "notified systemd"),
            Err(e) => tracing::warn!(
                "cannot send {state} to systemd on ${NOTIFY_SOCKET}={}: {e}; a Type=notify \
                 unit will not see it",
                self.describe()
            ),
        }
    }

    /// Sends `state` as one datagram; `Ok(false)` when there is no socket.
    pub fn send(&self, state: &str) -> io::Result<bool> {
        let Some(target) = &self.0 else {
            return Ok(false);
        };
        let socket = UnixDatagram::unbound()?;
        let sent = match target {
            Target::Path(path) => socket.send_to(state.as_bytes(), path)?,
            Target::Abstract(name) => {
                let addr = SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)?
            }
        };
        if sent != state.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                state.len()
            )));
        }
        Ok(true)
    }

    fn describe(&self) -> String {
        match &self.0 {
            None => String::new(),
            Some(Target::Path(p)) => p.display().to_string(),
            Some(Target::Abstract(n)) => format!("@{}", String::from_utf8_lossy(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn unset_or_empty_sends_nothing() {
        assert!(!Notifier::from_value(None).send("READY=1").unwrap());
        let empty = Notifier::from_value(Some(OsString::new()));
        assert_eq!(empty, Notifier::default());
        assert!(!empty.send("READY=1").unwrap());
    }

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::from_value(Some(path.clone().into_os_string()));
        notifier.ready();
        notifier.stopping();
        assert_eq!(received(&socket), "READY=1");
        assert_eq!(received(&socket), "STOPPING=1");
    }

    #[test]
    fn an_abstract_name_is_reached_through_at() {
        let name = format!("weftd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::from_value(Some(format!("@{name}").into()));
        assert!(notifier.send("READY=1").unwrap());
        assert_eq!(received(&socket), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_to_log_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::from_value(Some(dir.path().join("gone").into_os_string()));
        assert!(notifier.send("READY=1").is_err());
        // What the agent calls: logs a warning and carries on.
        notifier.ready();
    }
}
