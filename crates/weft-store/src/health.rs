//! Whether the agent can follow its store right now, for `weft status` and
//! `/metrics`.
//!
//! Why a handle of its own: during an outage (etcd without quorum, an API
//! server down) the agent keeps its last snapshot and its dataplane, so
//! nothing else it reports changes. Without this an operator would see a
//! healthy-looking node that is silently no longer learning about peers.
//! The peer watch is the witness: it fails within seconds of the store
//! losing quorum (etcd cancels watches that require a leader) and works
//! again as soon as the store does.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

/// What the store's health is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthState {
    /// When the current outage began; `None` while the store answers.
    pub unavailable_since: Option<SystemTime>,
    /// The last failure of the current outage, as the store reported it.
    pub last_error: Option<String>,
    /// Outages since the agent started (one per begin, however long).
    pub outages: u64,
}

/// A shared, cheaply cloned handle on a store's [`HealthState`]; a
/// receiver from [`StoreHealth::subscribe`] wakes on every change.
#[derive(Debug, Clone)]
pub struct StoreHealth(Arc<watch::Sender<HealthState>>);

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth(Arc::new(watch::Sender::new(HealthState::default())))
    }
}

impl StoreHealth {
    pub fn current(&self) -> HealthState {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<HealthState> {
        self.0.subscribe()
    }

    /// A request failed: begins an outage, or updates the error of the
    /// current one (receivers are woken only when the outage begins).
    pub(crate) fn failed(&self, error: &str) {
        self.0.send_if_modified(|s| {
            let began = s.unavailable_since.is_none();
            if began {
                s.unavailable_since = Some(SystemTime::now());
                s.outages += 1;
            }
            s.last_error = Some(error.to_owned());
            began
        });
    }

    /// The store answered: ends the outage, if any.
    pub(crate) fn recovered(&self) {
        self.0.send_if_modified(|s| {
            let ended = s.unavailable_since.is_some();
            s.unavailable_since = None;
            s.last_error = None;
            ended
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_counted_once_and_ends_on_recovery() {
        let h = StoreHealth::default();
        let mut rx = h.subscribe();
        h.failed("no leader");
        h.failed("no leader again");
        let s = h.current();
        assert!(s.unavailable_since.is_some());
        assert_eq!(s.outages, 1);
        assert_eq!(s.last_error.as_deref(), Some("no leader again"));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        h.recovered();
        assert!(rx.has_changed().unwrap());
        assert_eq!(h.current().unavailable_since, None);
        assert_eq!(h.current().outages, 1);
    }
}
