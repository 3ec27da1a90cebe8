//! One warning per store outage instead of one per retry.
//!
//! A watch retries every few seconds while its store is down; an operator
//! reading the log wants to know when the outage began, that it is still
//! going on, and when and after how long it ended, not a wall of identical
//! lines. Retries in between are logged at debug level.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::health::StoreHealth;

/// While an outage lasts, a reminder at most this often.
const REMIND_EVERY: Duration = Duration::from_secs(300);

/// The outage state of one watch (`what` names it in every line).
#[derive(Debug)]
pub(crate) struct OutageLog {
    what: &'static str,
    began: Option<Instant>,
    last_warned: Option<Instant>,
    failures: u32,
    /// Where the outage is also reported (`weft status`, `/metrics`).
    health: Option<StoreHealth>,
}

impl OutageLog {
    pub(crate) fn new(what: &'static str) -> OutageLog {
        OutageLog {
            what,
            began: None,
            last_warned: None,
            failures: 0,
            health: None,
        }
    }

    /// Also reports each outage's beginning and end on `health`.
    pub(crate) fn with_health(mut self, health: StoreHealth) -> OutageLog {
        self.health = Some(health);
        self
    }

    /// A failed attempt; `detail` says what failed and what happens next.
    pub(crate) fn failed(&mut self, store: &str, detail: &str) {
        self.failures += 1;
        if let Some(health) = &self.health {
            health.failed(detail);
        }
        let now = Instant::now();
        let began = *self.began.get_or_insert(now);
        let remind = self
            .last_warned
            .is_none_or(|t| now.duration_since(t) >= REMIND_EVERY);
        if remind {
            self.last_warned = Some(now);
            if self.failures == 1 {
                warn!(store, "{}: {detail}", self.what);
            } else {
                warn!(
                    store,
                    failures = self.failures,
                    "{} still failing after {:?}: {detail}",
                    self.what,
                    now.duration_since(began)
                );
            }
        } else {
            debug!(store, failures = self.failures, "{}: {detail}", self.what);
        }
    }

    /// The store answered again; logs the outage's end if there was one.
    pub(crate) fn recovered(&mut self, store: &str) {
        self.recovered_since(store, Instant::now());
    }

    /// The store has answered again since `at` (what answered was
    /// confirmed later); logs the outage's end, and its length up to `at`.
    pub(crate) fn recovered_since(&mut self, store: &str, at: Instant) {
        if let Some(health) = &self.health {
            health.recovered();
        }
        if let Some(began) = self.began.take() {
            info!(
                store,
                failures = self.failures,
                "{} works again after {:?}",
                self.what,
                at.saturating_duration_since(began)
            );
        }
        self.last_warned = None;
        self.failures = 0;
    }

    #[cfg(test)]
    fn in_outage(&self) -> bool {
        self.began.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_begins_on_failure_and_ends_on_recovery() {
        let mut log = OutageLog::new("lease watch");
        log.recovered("etcd");
        assert!(!log.in_outage(), "no outage without a failure");
        log.failed("etcd", "connection refused");
        log.failed("etcd", "connection refused");
        assert!(log.in_outage());
        assert_eq!(log.failures, 2);
        // Only the first failure warned; the second was within REMIND_EVERY.
        assert!(log.last_warned.is_some());
        log.recovered("etcd");
        assert!(!log.in_outage());
        assert_eq!(log.failures, 0);
    }
}
