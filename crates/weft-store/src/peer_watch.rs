//! Turning a key-value watch into screened peer snapshots.
//!
//! One listing, then a watch from the next revision; every batch of events
//! updates an in-memory copy and a new snapshot is published when the
//! screened result changes. A lost connection resumes from the last revision
//! seen; compacted history means listing again. Meanwhile the last snapshot
//! stays published: an outage never looks like "every peer left".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};
use weft_core::etcd_key;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::NetConfig;
use weft_core::peer::{self, PeerRejection, Precheck};

use crate::backoff::Backoff;
use crate::kv::{Kv, KvEntry, KvError, KvEvent, KvWatch};
use crate::outage::OutageLog;
use crate::{PeerSnapshot, SnapshotSender};

/// One key of the subnet directory, parsed and checked on its own once
/// when it changes (not on every snapshot: at 5 000 peers re-checking all
/// of them cost more than the rest of the store side together).
struct Parsed {
    create_rev: i64,
    mod_rev: i64,
    checked: Precheck,
}

struct Mirror {
    revision: i64,
    entries: BTreeMap<String, Parsed>,
}

fn parse(dir: &str, entry: &KvEntry, cfg: &NetConfig, own: &LeaseSubnets) -> Parsed {
    let lease = (|| -> Result<Lease, PeerRejection> {
        let name = entry.key.strip_prefix(dir).unwrap_or(&entry.key);
        let subnets = etcd_key::parse_subnet_key(name)?;
        let attrs = LeaseAttrs::from_json(&entry.value)?;
        Ok(Lease {
            subnets,
            attrs,
            expiration: None,
        })
    })();
    Parsed {
        create_rev: entry.create_rev,
        mod_rev: entry.mod_rev,
        checked: peer::precheck(cfg, own, lease),
    }
}

/// Per-watch bookkeeping that outlives reconnects.
struct Reporter {
    own: LeaseSubnets,
    own_key: String,
    /// Entries already warned about, at the revision they were warned for.
    warned: HashMap<String, i64>,
    skipped_total: BTreeMap<&'static str, u64>,
    watch_restarts: BTreeMap<&'static str, u64>,
}

impl Reporter {
    fn publish(&mut self, mirror: &Mirror, tx: &SnapshotSender) {
        let mut ordered: Vec<(&String, &Parsed)> = mirror.entries.iter().collect();
        ordered.sort_by_key(|(key, p)| (p.create_rev, *key));
        let screened = peer::screen_prechecked(
            &self.own,
            ordered.iter().map(|(key, p)| (key.as_str(), &p.checked)),
        );
        for rejected in &screened.rejected {
            let mod_rev = mirror.entries.get(&rejected.id).map_or(0, |p| p.mod_rev);
            if self.warned.get(&rejected.id) != Some(&mod_rev) {
                warn!(key = %rejected.id, reason = rejected.reason.kind(), "{rejected}");
                self.warned.insert(rejected.id.clone(), mod_rev);
                *self
                    .skipped_total
                    .entry(rejected.reason.kind())
                    .or_default() += 1;
            }
        }
        self.warned.retain(|k, _| mirror.entries.contains_key(k));
        let snapshot = PeerSnapshot {
            revision: mirror.revision,
            peers: screened,
            own_present: mirror.entries.contains_key(&self.own_key),
            skipped_total: self
                .skipped_total
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            watch_restarts: self
                .watch_restarts
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        };
        tx.send_if_modified(|current| {
            let changed = current.as_ref().is_none_or(|c| {
                c.peers != snapshot.peers
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
}

impl Reporter {
    fn restarted(&mut self, reason: &'static str) {
        *self.watch_restarts.entry(reason).or_default() += 1;
    }

    /// Whether `parsed` only renews what `mirror` holds for `key`: same
    /// creation, same verdict, and a lease that is not being reported as
    /// skipped (a skipped lease is warned about and counted once per
    /// revision, so its rewrite must be published). A renewal cannot change
    /// the snapshot, so no new one is built for it: the store side of a
    /// peer's renewal stays O(1) however many peers there are.
    fn is_renewal(&self, mirror: &Mirror, key: &str, parsed: &Parsed) -> bool {
        mirror.entries.get(key).is_some_and(|old| {
            old.create_rev == parsed.create_rev
                && old.checked == parsed.checked
                && !matches!(parsed.checked, Precheck::Rejected(_))
                && !self.warned.contains_key(key)
        })
    }
}

/// Sleeps for the next backoff delay unless every receiver went away.
/// Returns false when the watch should stop.
async fn pause(backoff: &mut Backoff, tx: &SnapshotSender) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(backoff.next_delay()) => true,
        _ = tx.closed() => false,
    }
}

pub(crate) async fn watch_peers<K: Kv>(
    kv: &K,
    prefix: &str,
    cfg: &NetConfig,
    own: LeaseSubnets,
    tx: SnapshotSender,
) {
    let dir = etcd_key::subnets_dir(prefix);
    let mut reporter = Reporter {
        own,
        own_key: etcd_key::lease_key(prefix, &own),
        warned: HashMap::new(),
        skipped_total: BTreeMap::new(),
        watch_restarts: BTreeMap::new(),
    };
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut outage = OutageLog::new("lease watch");
    let mut mirror: Option<Mirror> = None;
    while !tx.is_closed() {
        let mut current = match mirror.take() {
            Some(m) => m,
            None => match kv.list(&dir).await {
                Ok(listing) => {
                    backoff.reset();
                    outage.recovered(kv.name());
                    let m = Mirror {
                        revision: listing.revision,
                        entries: listing
                            .entries
                            .iter()
                            .map(|e| (e.key.clone(), parse(&dir, e, cfg, &own)))
                            .collect(),
                    };
                    reporter.publish(&m, &tx);
                    m
                }
                Err(e) => {
                    outage.failed(
                        kv.name(),
                        &format!(
                            "cannot list leases ({e}); keeping the last snapshot and retrying"
                        ),
                    );
                    if !pause(&mut backoff, &tx).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let mut watch = match kv.watch(&dir, current.revision + 1).await {
            Ok(w) => {
                outage.recovered(kv.name());
                // Publishes the restart count if it moved (nothing else
                // changed: the mirror is the one the lost watch left).
                reporter.publish(&current, &tx);
                w
            }
            Err(KvError::Compacted { .. }) => {
                info!(store = kv.name(), "watch history compacted; listing again");
                reporter.restarted("relist");
                continue;
            }
            Err(e) => {
                outage.failed(
                    kv.name(),
                    &format!(
                        "cannot watch leases ({e}); will resume from revision {}",
                        current.revision
                    ),
                );
                mirror = Some(current);
                if !pause(&mut backoff, &tx).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                r = watch.next() => r,
                _ = tx.closed() => return,
            };
            match next {
                Ok((revision, events)) => {
                    backoff.reset();
                    let mut changed = false;
                    for event in &events {
                        match event {
                            KvEvent::Put(entry) => {
                                let parsed = parse(&dir, entry, cfg, &own);
                                changed |= !reporter.is_renewal(&current, &entry.key, &parsed);
                                current.entries.insert(entry.key.clone(), parsed);
                            }
                            KvEvent::Delete { key, .. } => {
                                current.entries.remove(key);
                                changed = true;
                            }
                        }
                    }
                    current.revision = current.revision.max(revision);
                    if changed {
                        reporter.publish(&current, &tx);
                    }
                }
                Err(KvError::Compacted { .. }) => {
                    info!(store = kv.name(), "watch history compacted; listing again");
                    reporter.restarted("relist");
                    break;
                }
                Err(e) => {
                    reporter.restarted("error");
                    outage.failed(
                        kv.name(),
                        &format!(
                            "watch lost ({e}); resuming from revision {}",
                            current.revision
                        ),
                    );
                    mirror = Some(current);
                    if !pause(&mut backoff, &tx).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}
