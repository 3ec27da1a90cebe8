//! The one peer snapshot publisher every store feeds.
//!
//! A store's watch knows how to read its own entries (etcd keys, Node
//! objects); everything after that is the same for all of them and lives
//! here, once: the verdict on each entry by itself ([`Precheck`]), kept
//! from the moment the entry changed rather than recomputed per snapshot
//! (at 5 000 peers re-checking every lease cost more than the rest of the
//! store side together); the order leases are screened in (oldest first,
//! as flannel: the older of two overlapping leases is kept); screening the
//! kept verdicts for overlaps; one warning and one count per version of a
//! skipped entry; the watch-restart counters; and a new [`PeerSnapshot`]
//! only when the result differs from the one published.
//!
//! No I/O: the watches call it, and it is unit-tested on its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::{debug, warn};
use weft_core::lease::{Lease, LeaseSubnets};
use weft_core::peer::{self, Precheck, RejectedPeer};

use crate::{PeerSnapshot, SnapshotSender};

/// What the store calls its entries, for the field of the warning about a
/// skipped one (`key=` in etcd and the local file, `node=` in Kubernetes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ids {
    Keys,
    Nodes,
}

/// One entry of the store, as the publisher keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<O> {
    /// Where it sorts among the others (oldest first); the entry's id
    /// breaks ties. etcd: the create revision; Kubernetes: the
    /// creationTimestamp.
    pub order: O,
    /// Which version of the entry this is: a skipped entry is warned about
    /// and counted once per version. etcd: the modify revision;
    /// Kubernetes: a hash of the fields a lease is made of.
    pub version: u64,
    /// The verdict on the entry by itself; `None` for an entry that is no
    /// peer at all (a Node that flannel does not manage), kept so that its
    /// id stays known.
    pub checked: Option<Precheck>,
}

/// The state behind one watch's snapshots. `O` is the store's order key.
pub(crate) struct Publisher<O> {
    own: LeaseSubnets,
    ids: Ids,
    /// Each entry's order key, by id.
    index: HashMap<String, O>,
    /// The entries in screening order: iterating gives oldest first with
    /// no sort per snapshot.
    entries: BTreeMap<(O, String), Slot>,
    revision: i64,
    own_present: bool,
    /// Entries already warned about, with the version warned for.
    warned: HashMap<String, u64>,
    skipped_total: BTreeMap<&'static str, u64>,
    watch_restarts: BTreeMap<&'static str, u64>,
    /// Entries that passed their own checks with this batch of events and
    /// had not before: candidates for the early snapshot
    /// ([`PeerSnapshot::arrived`]).
    arrived: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    version: u64,
    checked: Option<Precheck>,
}

impl<O: Ord + Clone> Publisher<O> {
    /// `own`: this node's subnets, which no peer may overlap.
    pub(crate) fn new(own: LeaseSubnets, ids: Ids) -> Publisher<O> {
        Publisher {
            own,
            ids,
            index: HashMap::new(),
            entries: BTreeMap::new(),
            revision: 0,
            own_present: false,
            warned: HashMap::new(),
            skipped_total: BTreeMap::new(),
            watch_restarts: BTreeMap::new(),
            arrived: Vec::new(),
        }
    }

    /// The store revision the entries are at.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    pub(crate) fn set_revision(&mut self, revision: i64) {
        self.revision = revision;
    }

    /// The verdict kept for `id` if it is at `version`: a store reading
    /// its entries again (a listing after compaction or `410 Gone`, a
    /// Node event that changed nothing relevant) need not check them again.
    pub(crate) fn cached(&self, id: &str, version: u64) -> Option<&Option<Precheck>> {
        let order = self.index.get(id)?;
        self.entries
            .get(&(order.clone(), id.to_owned()))
            .filter(|slot| slot.version == version)
            .map(|slot| &slot.checked)
    }

    /// Whether `id` is at this order and version already (nothing of it
    /// changed).
    pub(crate) fn holds(&self, id: &str, order: &O, version: u64) -> bool {
        self.index.get(id) == Some(order) && self.cached(id, version).is_some()
    }

    /// Records our own entry's presence (when it goes missing the agent
    /// acquires again). Returns whether it changed.
    pub(crate) fn set_own_present(&mut self, present: bool) -> bool {
        std::mem::replace(&mut self.own_present, present) != present
    }

    /// Adds or replaces one entry. Returns whether the snapshot may change:
    /// not when the entry is the same, nor for a renewal — same order, same
    /// verdict, and not an entry being reported as skipped (a skipped
    /// entry is warned about and counted once per version, so its new
    /// version must be published). A renewal then costs O(log n), however
    /// many peers there are.
    pub(crate) fn upsert(&mut self, id: String, entry: Entry<O>) -> bool {
        let slot = Slot {
            version: entry.version,
            checked: entry.checked,
        };
        let passes = matches!(slot.checked, Some(Precheck::Passed(_)));
        let changed = match self.index.get(&id) {
            None => {
                if passes {
                    self.arrived.push(id.clone());
                }
                true
            }
            Some(order) => {
                let key = (order.clone(), id.clone());
                let old = self.entries.get(&key);
                let passed = old.is_some_and(|o| matches!(o.checked, Some(Precheck::Passed(_))));
                if passes && !passed {
                    self.arrived.push(id.clone());
                }
                let same_place = *order == entry.order;
                let unchanged = same_place && old == Some(&slot);
                let renewal = same_place
                    && old.is_some_and(|o| o.checked == slot.checked)
                    && !matches!(slot.checked, Some(Precheck::Rejected(_)))
                    && !self.warned.contains_key(&id);
                if !same_place {
                    self.entries.remove(&key);
                }
                !(unchanged || renewal)
            }
        };
        self.index.insert(id.clone(), entry.order.clone());
        self.entries.insert((entry.order, id), slot);
        changed
    }

    /// Removes one entry. Returns whether it was there.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        self.arrived.retain(|a| a != id);
        match self.index.remove(id) {
            Some(order) => {
                self.entries.remove(&(order, id.to_owned()));
                true
            }
            None => false,
        }
    }

    /// Replaces every entry at once (a fresh listing), so that a snapshot
    /// never sees the store half empty.
    pub(crate) fn replace_all(
        &mut self,
        revision: i64,
        entries: impl IntoIterator<Item = (String, Entry<O>)>,
    ) {
        self.index.clear();
        self.entries.clear();
        self.arrived.clear();
        for (id, e) in entries {
            self.index.insert(id.clone(), e.order.clone());
            self.entries.insert(
                (e.order, id),
                Slot {
                    version: e.version,
                    checked: e.checked,
                },
            );
        }
        self.revision = revision;
    }

    /// The watch had to start over for `reason` (`relist` or `error`).
    pub(crate) fn restarted(&mut self, reason: &'static str) {
        *self.watch_restarts.entry(reason).or_default() += 1;
    }

    fn warn_once(&mut self, rejected: &RejectedPeer) {
        let version = self
            .index
            .get(&rejected.id)
            .and_then(|o| self.entries.get(&(o.clone(), rejected.id.clone())))
            .map_or(0, |s| s.version);
        if self.warned.get(&rejected.id) == Some(&version) {
            return;
        }
        let reason = rejected.reason.kind();
        match self.ids {
            Ids::Keys => warn!(key = %rejected.id, reason, "{rejected}"),
            Ids::Nodes => warn!(node = %rejected.id, reason, "{rejected}"),
        }
        self.warned.insert(rejected.id.clone(), version);
        *self.skipped_total.entry(reason).or_default() += 1;
    }

    /// [`Publisher::publish`] after a batch of watch events. When an early
    /// snapshot went out, the task yields before screening: the agent's
    /// tasks it woke wait on this worker thread (tokio runs a woken task
    /// next, on the waker's thread), and screening thousands of leases
    /// first would make the newcomer's route wait for it.
    pub(crate) async fn publish_events(&mut self, tx: &SnapshotSender) {
        if self.publish_arrivals(tx) {
            tokio::task::yield_now().await;
        }
        self.publish(tx);
    }

    /// Screens the kept verdicts, warns about and counts what is newly
    /// skipped, and publishes a snapshot on `tx` if the result (peers, our
    /// presence, counters) differs from the current one
    /// (an early snapshot first, if entries arrived).
    pub(crate) fn publish(&mut self, tx: &SnapshotSender) {
        self.publish_arrivals(tx);
        let screened = peer::screen_prechecked(
            &self.own,
            self.entries
                .iter()
                .filter_map(|((_, id), slot)| Some((id.as_str(), slot.checked.as_ref()?))),
        );
        for rejected in &screened.rejected {
            self.warn_once(rejected);
        }
        let index = &self.index;
        self.warned.retain(|id, _| index.contains_key(id));
        let counts = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let snapshot = PeerSnapshot {
            revision: self.revision,
            peers: Arc::new(screened),
            own_present: self.own_present,
            skipped_total: counts(&self.skipped_total),
            watch_restarts: counts(&self.watch_restarts),
            arrived: Vec::new(),
        };
        tx.send_if_modified(|current| {
            let changed = current.as_ref().is_none_or(|c| {
                c.is_early()
                    || c.peers != snapshot.peers
                    || c.own_present != snapshot.own_present
                    || c.skipped_total != snapshot.skipped_total
                    || c.watch_restarts != snapshot.watch_restarts
            });
            if changed {
                debug!(
                    revision = snapshot.revision,
                    peers = snapshot.peers.accepted.len(),
                    skipped = snapshot.peers.rejected.len(),
                    "peer snapshot"
                );
                *current = Some(Arc::new(snapshot));
            }
            changed
        });
    }

    /// The lease `id` holds if it passed its own checks.
    fn passed(&self, id: &str) -> Option<&Lease> {
        let order = self.index.get(id)?;
        match &self.entries.get(&(order.clone(), id.to_owned()))?.checked {
            Some(Precheck::Passed(lease)) => Some(lease),
            _ => None,
        }
    }

    /// Whether `lease` (entry `id`) overlaps our own subnets or any other
    /// entry that passed its checks: then screening decides, by age, and
    /// the lease waits for the full snapshot.
    fn overlaps_another(&self, id: &str, lease: &Lease) -> bool {
        let clash = |other: &LeaseSubnets| {
            lease
                .subnets
                .iter()
                .any(|a| other.iter().any(|b| a.contains(&b) || b.contains(&a)))
        };
        clash(&self.own)
            || self.entries.iter().any(|((_, other_id), slot)| {
                other_id != id
                    && matches!(&slot.checked, Some(Precheck::Passed(l)) if clash(&l.subnets))
            })
    }

    /// Publishes the early snapshot: the current one's peers (shared) and
    /// the entries that arrived with this batch and overlap nothing, which
    /// screening is certain to accept, so the agent can program them before
    /// anything else (see [`PeerSnapshot::arrived`]). Nothing is published
    /// before the first full snapshot; the full one always follows.
    fn publish_arrivals(&mut self, tx: &SnapshotSender) -> bool {
        let ids = std::mem::take(&mut self.arrived);
        let arrived: Vec<(String, Lease)> = ids
            .into_iter()
            .filter_map(|id| {
                let lease = self.passed(&id)?;
                (!self.overlaps_another(&id, lease)).then(|| (id.clone(), lease.clone()))
            })
            .collect();
        if arrived.is_empty() {
            return false;
        }
        let revision = self.revision;
        tx.send_if_modified(|current| {
            let Some(c) = current.as_ref() else {
                return false;
            };
            debug!(revision, arrived = arrived.len(), "early peer snapshot");
            *current = Some(Arc::new(PeerSnapshot {
                revision,
                peers: Arc::clone(&c.peers),
                own_present: c.own_present,
                skipped_total: c.skipped_total.clone(),
                watch_restarts: c.watch_restarts.clone(),
                arrived,
            }));
            true
        })
    }
}

#[cfg(test)]
mod tests;
