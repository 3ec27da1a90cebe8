//! Carrying the lease store's health into `weft status` and `/metrics`.
//!
//! Why: during a store outage the agent deliberately changes nothing (its
//! last snapshot and dataplane stay), so without this an operator could not
//! tell a quiet cluster from a node that has stopped learning about peers.
//! The outage is logged once by the store's watch; here it becomes the
//! `weft_store_available` gauge, the `weft_store_outages_total` counter and
//! a line of `weft status`.

use std::time::SystemTime;

use weft_core::status::StoreOutageView;
use weft_store::{HealthState, StoreHealth};

use super::status::StatusHandle;

/// Copies every change of `health` into `status` until the store is gone.
pub fn follow(health: StoreHealth, status: StatusHandle) {
    let mut rx = health.subscribe();
    status.set_store_health(rx.borrow_and_update().clone());
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let state = rx.borrow_and_update().clone();
            status.set_store_health(state);
        }
    });
}

/// The status view of an ongoing outage; `None` while the store answers.
pub fn outage_view(health: &HealthState, now: SystemTime) -> Option<StoreOutageView> {
    let since = health.unavailable_since?;
    Some(StoreOutageView {
        since_unix: since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        for_secs: now.duration_since(since).map_or(0, |d| d.as_secs()),
        error: health.last_error.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_outage_shows_its_length_and_error() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(outage_view(&HealthState::default(), now), None);
        let health = HealthState {
            unavailable_since: Some(now - Duration::from_secs(31)),
            last_error: Some("etcd: no leader".into()),
            outages: 1,
        };
        let view = outage_view(&health, now).unwrap();
        assert_eq!((view.since_unix, view.for_secs), (969, 31));
        assert_eq!(view.error, "etcd: no leader");
    }
}
