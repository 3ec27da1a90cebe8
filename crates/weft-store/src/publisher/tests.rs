//! The publisher on its own: no store, no I/O, a watch channel to read
//! what it published.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tokio::sync::watch;
use weft_core::backend_data::VxlanData;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::mac::Mac;
use weft_core::peer::{PeerRejection, Precheck};

use super::{Entry, Ids, Publisher};
use crate::PeerSnapshot;

type Rx = watch::Receiver<Option<Arc<PeerSnapshot>>>;

fn own() -> LeaseSubnets {
    LeaseSubnets {
        v4: Some("10.244.9.0/24".parse().unwrap()),
        v6: None,
    }
}

fn lease(subnet: &str, last_octet: u8) -> Lease {
    Lease {
        subnets: LeaseSubnets {
            v4: Some(subnet.parse().unwrap()),
            v6: None,
        },
        attrs: LeaseAttrs {
            public_ip: Some(format!("192.0.2.{last_octet}").parse().unwrap()),
            backend_type: "vxlan".into(),
            backend_data: Some(
                VxlanData {
                    vni: 1,
                    vtep_mac: Mac([0x0e, 0, 0, 0, 0, last_octet]),
                }
                .encode(),
            ),
            ..LeaseAttrs::default()
        },
        expiration: None,
    }
}

fn passed(order: i64, version: u64, subnet: &str) -> Entry<i64> {
    Entry {
        order,
        version,
        checked: Some(Precheck::Passed(lease(subnet, order as u8))),
    }
}

fn rejected(order: i64, version: u64) -> Entry<i64> {
    Entry {
        order,
        version,
        checked: Some(Precheck::Rejected(PeerRejection::NoSubnet)),
    }
}

fn channel() -> (crate::SnapshotSender, Rx) {
    watch::channel(None)
}

/// The snapshot if one was published since the last look.
fn published(rx: &mut Rx) -> Option<Arc<PeerSnapshot>> {
    if rx.has_changed().unwrap() {
        rx.borrow_and_update().clone()
    } else {
        None
    }
}

/// A listing of passed leases: (id, create revision, subnet), each at
/// its create revision.
fn listing(leases: &[(&str, i64, &str)]) -> Vec<(String, Entry<i64>)> {
    leases
        .iter()
        .map(|(id, rev, subnet)| ((*id).to_owned(), passed(*rev, *rev as u64, subnet)))
        .collect()
}

fn accepted(s: &PeerSnapshot) -> Vec<&str> {
    s.peers.accepted.iter().map(|(id, _)| id.as_str()).collect()
}

#[test]
fn leases_are_screened_oldest_first_whatever_their_ids() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Keys);
    p.replace_all(
        7,
        listing(&[
            ("c", 3, "10.244.3.0/24"),
            ("a", 5, "10.244.1.0/24"),
            // Same order as "c": the id breaks the tie.
            ("b", 3, "10.244.2.0/24"),
            // Overlaps "a" but is older: it keeps the subnet.
            ("z", 1, "10.244.1.0/24"),
        ]),
    );
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.revision, 7);
    assert_eq!(accepted(&s), ["z", "b", "c"]);
    assert_eq!(s.peers.rejected.len(), 1);
    assert_eq!(s.peers.rejected[0].id, "a");

    // A new create revision moves an entry: "z" is now the newest.
    assert!(p.upsert("z".into(), passed(9, 9, "10.244.1.0/24")));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(accepted(&s), ["b", "c", "a"]);
    assert_eq!(s.peers.rejected[0].id, "z");
}

#[test]
fn a_skipped_entry_is_warned_and_counted_once_per_version() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Nodes);
    assert!(p.upsert("bad".into(), rejected(1, 10)));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.skipped_total.get("no_subnet"), Some(&1));

    // The same version again (a Node event that changed nothing relevant):
    // nothing to publish, nothing counted.
    assert!(!p.upsert("bad".into(), rejected(1, 10)));
    p.publish(&tx);
    assert!(published(&mut rx).is_none());

    // A new version of a skipped entry is never a renewal: counted again.
    assert!(p.upsert("bad".into(), rejected(1, 11)));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.skipped_total.get("no_subnet"), Some(&2));

    // A lease skipped for overlapping an older one is rewritten with the
    // same verdict: still skipped, so counted for its new version too.
    p.upsert("old".into(), passed(2, 20, "10.244.1.0/24"));
    p.upsert("dup".into(), passed(3, 30, "10.244.1.0/24"));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.skipped_total.get("overlap"), Some(&1));
    assert!(p.upsert("dup".into(), passed(3, 31, "10.244.1.0/24")));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.skipped_total.get("overlap"), Some(&2));

    // Gone and back at the same version: warned again (it was forgotten).
    assert!(p.remove("bad"));
    p.publish(&tx);
    published(&mut rx).unwrap();
    p.upsert("bad".into(), rejected(1, 11));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.skipped_total.get("no_subnet"), Some(&3));
}

#[test]
fn renewals_and_repeats_publish_nothing() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Keys);
    p.replace_all(1, listing(&[("a", 1, "10.244.1.0/24")]));
    p.publish(&tx);
    published(&mut rx).unwrap();

    // A renewal: same creation, same verdict, a new modify revision.
    assert!(!p.upsert("a".into(), passed(1, 2, "10.244.1.0/24")));
    // Publishing anyway finds nothing new to send.
    p.set_revision(2);
    p.publish(&tx);
    assert!(published(&mut rx).is_none());
    // A changed verdict is not a renewal.
    assert!(p.upsert("a".into(), passed(1, 3, "10.244.4.0/24")));
    // Removing what is not there changes nothing.
    assert!(!p.remove("nothing"));
    // Our own presence publishes when it changes, and only then.
    assert!(p.set_own_present(true));
    assert!(!p.set_own_present(true));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert!(s.own_present);
    assert_eq!(s.revision, 2);
}

#[test]
fn restarts_are_counted_by_reason_and_published() {
    let (tx, mut rx) = channel();
    let mut p: Publisher<i64> = Publisher::new(own(), Ids::Keys);
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert!(s.watch_restarts.is_empty() && s.peers.accepted.is_empty());
    p.restarted("error");
    p.restarted("relist");
    p.restarted("error");
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.watch_restarts.get("error"), Some(&2));
    assert_eq!(s.watch_restarts.get("relist"), Some(&1));
}

#[test]
fn entries_that_are_no_peer_are_kept_but_never_screened() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Nodes);
    let plain = Entry {
        order: "2026-01-01T00:00:00Z".to_owned(),
        version: 5,
        checked: None,
    };
    assert!(p.upsert("plain".into(), plain.clone()));
    assert_eq!(p.cached("plain", 5), Some(&None));
    assert!(p.holds("plain", &plain.order, 5));
    assert!(!p.holds("plain", &plain.order, 6));
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert!(s.peers.accepted.is_empty() && s.peers.rejected.is_empty());
    // Another node claiming our own subnet is an overlap to report (the
    // Kubernetes store leaves our node out by name, not by subnet).
    let mine = Entry {
        order: "2026-01-01T00:00:01Z".to_owned(),
        version: 1,
        checked: Some(Precheck::Passed(lease("10.244.9.0/24", 4))),
    };
    p.upsert("claimer".into(), mine);
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.peers.rejected[0].id, "claimer");
    assert_eq!(s.skipped_total.get("overlap"), Some(&1));
}

#[test]
fn a_listing_replaces_everything_and_keeps_known_verdicts() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Keys);
    p.replace_all(
        3,
        listing(&[("a", 1, "10.244.1.0/24"), ("b", 2, "10.244.2.0/24")]),
    );
    p.publish(&tx);
    published(&mut rx).unwrap();
    assert!(p.cached("a", 1).is_some());
    assert!(p.cached("a", 2).is_none());
    assert!(p.cached("nothing", 1).is_none());
    p.replace_all(9, listing(&[("b", 2, "10.244.2.0/24")]));
    assert_eq!(p.revision(), 9);
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(accepted(&s), ["b"]);
}

fn arrived(s: &PeerSnapshot) -> Vec<&str> {
    s.arrived.iter().map(|(id, _)| id.as_str()).collect()
}

fn all_accepted(s: &PeerSnapshot) -> Vec<&str> {
    s.accepted().map(|(id, _)| id.as_str()).collect()
}

/// A new lease that overlaps nothing is published the moment it is read,
/// in an early snapshot that shares the peers of the one before (nothing
/// copied) and names the newcomer; the full snapshot then replaces it.
#[test]
fn a_new_lease_that_overlaps_nothing_is_published_early() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Keys);
    p.replace_all(
        3,
        listing(&[("a", 1, "10.244.1.0/24"), ("b", 2, "10.244.2.0/24")]),
    );
    p.publish(&tx);
    let before = published(&mut rx).unwrap();
    assert!(!before.is_early(), "a listing is no arrival");

    assert!(p.upsert("c".into(), passed(4, 4, "10.244.3.0/24")));
    p.set_revision(4);
    p.publish_arrivals(&tx);
    let s = published(&mut rx).unwrap();
    assert!(s.is_early());
    assert_eq!(arrived(&s), ["c"]);
    assert!(Arc::ptr_eq(&s.peers, &before.peers));
    assert_eq!(all_accepted(&s), ["a", "b", "c"]);
    assert_eq!((s.revision, s.accepted_count()), (4, 3));

    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert!(!s.is_early());
    assert_eq!(accepted(&s), ["a", "b", "c"]);

    // A renewal of it arrives nothing.
    assert!(!p.upsert("c".into(), passed(4, 5, "10.244.3.0/24")));
    p.publish_arrivals(&tx);
    assert!(published(&mut rx).is_none());
}

/// What screening must decide by age waits for it: a newcomer that
/// overlaps another lease or this node's subnet, and one gone again
/// before the batch was published.
#[test]
fn overlapping_or_vanished_newcomers_wait_for_screening() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Keys);
    p.replace_all(3, listing(&[("a", 1, "10.244.1.0/24")]));
    p.publish(&tx);
    published(&mut rx).unwrap();

    p.upsert("dup".into(), passed(4, 4, "10.244.1.0/24"));
    p.upsert("mine".into(), passed(5, 5, "10.244.9.0/24"));
    p.upsert("gone".into(), passed(6, 6, "10.244.6.0/24"));
    assert!(p.remove("gone"));
    p.publish_arrivals(&tx);
    assert!(published(&mut rx).is_none());
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(accepted(&s), ["a"]);
    assert_eq!(s.peers.rejected.len(), 2);
}

/// Nothing is published early before the first full snapshot: the agent
/// must never see a partial peer set as the whole.
#[test]
fn no_early_snapshot_before_the_first_one() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Keys);
    p.upsert("a".into(), passed(1, 1, "10.244.1.0/24"));
    p.publish_arrivals(&tx);
    assert!(published(&mut rx).is_none());
    p.publish(&tx);
    assert_eq!(accepted(&published(&mut rx).unwrap()), ["a"]);
}

/// An entry that was skipped (or was no peer: a Node without flannel's
/// annotations yet) and now passes arrives too.
#[test]
fn an_entry_that_starts_passing_arrives() {
    let (tx, mut rx) = channel();
    let mut p = Publisher::new(own(), Ids::Nodes);
    p.upsert("bad".into(), rejected(1, 10));
    p.upsert(
        "plain".into(),
        Entry {
            order: 2,
            version: 20,
            checked: None,
        },
    );
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(s.peers.rejected.len(), 1);

    p.upsert("bad".into(), passed(1, 11, "10.244.5.0/24"));
    p.upsert("plain".into(), passed(2, 21, "10.244.6.0/24"));
    p.publish_arrivals(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(arrived(&s), ["bad", "plain"]);
    p.publish(&tx);
    let s = published(&mut rx).unwrap();
    assert_eq!(accepted(&s), ["bad", "plain"]);
    assert!(s.peers.rejected.is_empty());
}
