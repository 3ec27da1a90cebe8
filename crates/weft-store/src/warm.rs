//! One listing of the subnet directory for the whole start-up.
//!
//! An agent reads the subnet directory three times as it starts: for what
//! it published before (`previous_attrs`), to choose its lease (`acquire`)
//! and to start the peer watch. At 10 000 leases each listing is tens of
//! milliseconds of the cold start, so each step hands its listing to the
//! next instead of listing again. That is safe because every use
//! tolerates a listing a moment old: `acquire` writes only with
//! compare-and-swap on the revisions it listed (a change in between is a
//! lost race: it lists again), and the peer watch resumes from the
//! listing's revision, so the store replays whatever changed since.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::kv::Listing;

/// A listing older than this is listed again: the steps of one start-up
/// follow each other within milliseconds, and an agent that waited (a
/// store outage, a retry) should not choose from an old picture.
const FRESH_FOR: Duration = Duration::from_secs(5);

/// A listing handed from one start-up step to the next.
#[derive(Debug)]
pub(crate) struct WarmListing {
    pub listing: Listing,
    /// The lease key this agent wrote after the listing was taken (by
    /// `acquire`): the peer watch counts it as present, as the store's
    /// replay of events since the listing will confirm.
    pub written: Option<String>,
    taken: Instant,
}

/// The one listing kept between start-up steps; each step takes it. The
/// start-up ends when the peer watch takes it: the slot then keeps
/// nothing more, so that a later acquisition (a lease that vanished),
/// which no new watch follows, does not hold a listing for good.
#[derive(Debug, Default)]
pub(crate) struct WarmSlot(Mutex<Slot>);

#[derive(Debug, Default)]
struct Slot {
    kept: Option<WarmListing>,
    closed: bool,
}

impl WarmSlot {
    pub fn keep(&self, listing: Listing, written: Option<String>) {
        self.keep_at(listing, written, Instant::now());
    }

    fn keep_at(&self, listing: Listing, written: Option<String>, taken: Instant) {
        if let Ok(mut slot) = self.0.lock()
            && !slot.closed
        {
            slot.kept = Some(WarmListing {
                listing,
                written,
                taken,
            });
        }
    }

    /// The kept listing if it is still fresh; the slot is empty afterwards
    /// either way.
    pub fn take(&self) -> Option<WarmListing> {
        let kept = self.0.lock().ok()?.kept.take()?;
        (kept.taken.elapsed() <= FRESH_FOR).then_some(kept)
    }

    /// [`WarmSlot::take`] by the last step of the start-up: nothing is
    /// kept from now on.
    pub fn take_last(&self) -> Option<WarmListing> {
        let mut slot = self.0.lock().ok()?;
        slot.closed = true;
        let kept = slot.kept.take()?;
        (kept.taken.elapsed() <= FRESH_FOR).then_some(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(revision: i64) -> Listing {
        Listing {
            revision,
            entries: Vec::new(),
        }
    }

    #[test]
    fn a_listing_is_taken_once() {
        let slot = WarmSlot::default();
        slot.keep(listing(7), Some("/k".into()));
        let kept = slot.take().map(|w| (w.listing.revision, w.written));
        assert_eq!(kept, Some((7, Some("/k".to_owned()))));
        assert!(slot.take().is_none(), "a second step must list for itself");
    }

    #[test]
    fn a_stale_listing_is_not_used() {
        let slot = WarmSlot::default();
        let Some(long_ago) = Instant::now().checked_sub(FRESH_FOR * 2) else {
            return; // a clock this close to its origin cannot hold the case
        };
        slot.keep_at(listing(7), None, long_ago);
        assert!(slot.take().is_none());
    }

    #[test]
    fn nothing_is_kept_once_the_watch_has_started() {
        let slot = WarmSlot::default();
        slot.keep(listing(7), None);
        assert_eq!(slot.take_last().map(|w| w.listing.revision), Some(7));
        slot.keep(listing(9), Some("/k".into()));
        assert!(
            slot.take().is_none(),
            "a later acquisition's listing is dropped"
        );
    }

    #[test]
    fn a_newer_listing_replaces_the_kept_one() {
        let slot = WarmSlot::default();
        slot.keep(listing(7), None);
        slot.keep(listing(9), None);
        assert_eq!(slot.take().map(|w| w.listing.revision), Some(9));
    }
}
