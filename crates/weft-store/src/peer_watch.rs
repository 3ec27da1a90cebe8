//! Turning a key-value watch into screened peer snapshots.
//!
//! One listing, then a watch from the next revision; every batch of events
//! updates the [`Publisher`], which publishes a new snapshot when the
//! screened result changes. A lost connection resumes from the last
//! revision seen; compacted history means listing again. Meanwhile the last
//! snapshot stays published: an outage never looks like "every peer left".

use std::time::Duration;

use tracing::info;
use weft_core::etcd_key;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::NetConfig;
use weft_core::peer::{self, PeerRejection};

use crate::SnapshotSender;
use crate::backoff::Backoff;
use crate::health::StoreHealth;
use crate::kv::{Kv, KvEntry, KvError, KvEvent, KvWatch};
use crate::outage::OutageLog;
use crate::publisher::{Entry, Ids, Publisher};
use crate::warm::WarmListing;

/// What the publisher keeps of one key: ordered by create revision (older
/// leases win overlaps), versioned by modify revision.
type KvPublisher = Publisher<i64>;

/// One key of the subnet directory, parsed and checked on its own. A key
/// at a version the publisher already holds (a listing again after
/// compaction) keeps its verdict.
fn parse(
    publisher: &KvPublisher,
    dir: &str,
    entry: &KvEntry,
    cfg: &NetConfig,
    own: &LeaseSubnets,
) -> Entry<i64> {
    let version = entry.mod_rev as u64;
    let checked = match publisher.cached(&entry.key, version) {
        Some(kept) => kept.clone(),
        None => {
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
            Some(peer::precheck(cfg, own, lease))
        }
    };
    Entry {
        order: entry.create_rev,
        version,
        checked,
    }
}

/// How long a new watch must run without failing before an outage is
/// over (events end it sooner): longer than etcd takes to cancel the
/// watches of a member that has lost its leader (3 to 4 election timeouts
/// after it notices, 1 s each by default).
const CONFIRM: Duration = Duration::from_secs(10);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn watch_peers<K: Kv>(
    kv: &K,
    prefix: &str,
    cfg: &NetConfig,
    own: LeaseSubnets,
    tx: SnapshotSender,
    health: &StoreHealth,
    mut warm: Option<WarmListing>,
) {
    let dir = etcd_key::subnets_dir(prefix);
    let own_key = etcd_key::lease_key(prefix, &own);
    let mut publisher = KvPublisher::new(own, Ids::Keys);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut outage = OutageLog::new("lease watch").with_health(health.clone());
    // Whether the publisher holds a listing to resume from (false at the
    // start and after compaction: list again).
    let mut listed = false;
    while !tx.is_closed() {
        if !listed {
            // The first listing may be the one the lease was chosen from.
            let (listing, written) = match warm.take() {
                Some(w) => (Ok(w.listing), w.written),
                None => (kv.list(&dir).await, None),
            };
            match listing {
                Ok(listing) => {
                    backoff.reset();
                    outage.recovered(kv.name());
                    let entries: Vec<(String, Entry<i64>)> = listing
                        .entries
                        .iter()
                        .map(|e| (e.key.clone(), parse(&publisher, &dir, e, cfg, &own)))
                        .collect();
                    publisher.replace_all(listing.revision, entries);
                    // A lease written after the listing is there: the
                    // watch from the listing's revision replays its write.
                    let own_present = written.as_deref() == Some(own_key.as_str())
                        || listing.entries.iter().any(|e| e.key == own_key);
                    publisher.set_own_present(own_present);
                    publisher.publish(&tx);
                    listed = true;
                }
                Err(e) => {
                    outage.failed(
                        kv.name(),
                        &format!(
                            "cannot list leases ({e}); keeping the last snapshot and retrying"
                        ),
                    );
                    if !backoff.pause(&tx).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let created = std::time::Instant::now();
        let mut watch = match kv.watch(&dir, publisher.revision() + 1).await {
            Ok(w) => {
                // Publishes the restart count if it moved (nothing else
                // changed: the entries are the ones the lost watch left).
                publisher.publish(&tx);
                w
            }
            Err(KvError::Compacted { .. }) => {
                info!(store = kv.name(), "watch history compacted; listing again");
                publisher.restarted("relist");
                listed = false;
                continue;
            }
            Err(e) => {
                outage.failed(
                    kv.name(),
                    &format!(
                        "cannot watch leases ({e}); will resume from revision {}",
                        publisher.revision()
                    ),
                );
                if !backoff.pause(&tx).await {
                    return;
                }
                continue;
            }
        };
        // An outage ends once the new watch has proved itself: events, or
        // CONFIRM without failing. A member that has not yet noticed that
        // its leader is gone accepts a watch and cancels it seconds later;
        // that is still the same outage, logged once.
        let mut confirm_at = Some(tokio::time::Instant::now() + CONFIRM);
        loop {
            let next = tokio::select! {
                r = watch.next() => r,
                _ = tx.closed() => return,
                _ = sleep_until(confirm_at) => {
                    confirm_at = None;
                    outage.recovered_since(kv.name(), created);
                    continue;
                }
            };
            if next.is_ok() && confirm_at.take().is_some() {
                outage.recovered_since(kv.name(), created);
            }
            match next {
                Ok((revision, events)) => {
                    backoff.reset();
                    let mut changed = false;
                    for event in &events {
                        match event {
                            KvEvent::Put(entry) => {
                                let parsed = parse(&publisher, &dir, entry, cfg, &own);
                                changed |= publisher.upsert(entry.key.clone(), parsed);
                                if entry.key == own_key {
                                    changed |= publisher.set_own_present(true);
                                }
                            }
                            KvEvent::Delete { key, .. } => {
                                changed |= publisher.remove(key);
                                if *key == own_key {
                                    changed |= publisher.set_own_present(false);
                                }
                            }
                        }
                    }
                    publisher.set_revision(publisher.revision().max(revision));
                    if changed {
                        publisher.publish_events(&tx).await;
                    }
                }
                Err(KvError::Compacted { .. }) => {
                    info!(store = kv.name(), "watch history compacted; listing again");
                    publisher.restarted("relist");
                    listed = false;
                    break;
                }
                Err(e) => {
                    publisher.restarted("error");
                    outage.failed(
                        kv.name(),
                        &format!(
                            "watch lost ({e}); resuming from revision {}",
                            publisher.revision()
                        ),
                    );
                    if !backoff.pause(&tx).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}
