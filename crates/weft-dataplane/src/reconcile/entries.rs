//! Neighbour and FDB entries on weft's vxlan devices. Every permanent
//! neighbour and every FDB entry with a remote (`dst`) on those devices is
//! weft's, so anything not desired is stale: a peer that left while the
//! agent was down is cleaned up (flannel never does, #2554).

use std::net::IpAddr;

use weft_core::fast_hash::{FastMap, FastSet};
use weft_core::mac::Mac;
use weft_core::plan::{FdbPlan, NeighPlan};

use super::{ApplyReport, EntryError, Kernel};
use crate::netlink::{FdbInfo, NeighInfo, NeighState, NetlinkError};

/// Counts what went in of a batch over `items`; keeps what did not, named
/// by `what` of its item. With `allow_missing`, an item already gone (a
/// delete of something not there) is neither.
pub(super) fn note<T>(
    report: &mut ApplyReport,
    items: &[T],
    results: Vec<Result<(), NetlinkError>>,
    counter: fn(&mut ApplyReport) -> &mut u32,
    allow_missing: bool,
    what: impl Fn(&T) -> String,
) {
    for (item, r) in items.iter().zip(results) {
        match r {
            Ok(()) => *counter(report) += 1,
            Err(e) if allow_missing && e.is_not_found() => {}
            Err(e) => report.errors.push(EntryError::new(what(item), e)),
        }
    }
}

/// Desired neighbours of one device, as `ip → mac`.
pub fn neighbours_by_dev(plans: &[NeighPlan]) -> FastMap<&str, FastMap<IpAddr, Mac>> {
    let mut out: FastMap<&str, FastMap<IpAddr, Mac>> = FastMap::default();
    for n in plans {
        out.entry(n.dev.as_str()).or_default().insert(n.ip, n.mac);
    }
    out
}

/// Desired FDB entries of one device, as `(mac, dst)`.
pub fn fdb_by_dev(plans: &[FdbPlan]) -> FastMap<&str, FastSet<(Mac, IpAddr)>> {
    let mut out: FastMap<&str, FastSet<(Mac, IpAddr)>> = FastMap::default();
    for f in plans {
        out.entry(f.dev.as_str())
            .or_default()
            .insert((f.mac, f.dst));
    }
    out
}

/// What to change on one device, computed before routes are touched so that
/// additions go in before the routes that use them and removals after.
#[derive(Debug, Default)]
pub struct EntryChanges {
    pub index: u32,
    pub neigh_set: Vec<(IpAddr, Mac)>,
    pub neigh_del: Vec<IpAddr>,
    pub fdb_set: Vec<(Mac, IpAddr)>,
    pub fdb_del: Vec<(Mac, IpAddr)>,
}

/// The changes that make device `index`'s entries the desired ones, from
/// what the kernel holds (pure: the caller reads the kernel).
impl EntryChanges {
    pub fn is_empty(&self) -> bool {
        self.neigh_set.is_empty()
            && self.neigh_del.is_empty()
            && self.fdb_set.is_empty()
            && self.fdb_del.is_empty()
    }
}

pub fn diff(
    index: u32,
    have_neigh: &[NeighInfo],
    have_fdb: &[FdbInfo],
    want_neigh: &FastMap<IpAddr, Mac>,
    want_fdb: &FastSet<(Mac, IpAddr)>,
) -> EntryChanges {
    let mut changes = EntryChanges {
        index,
        ..EntryChanges::default()
    };
    let have: FastMap<IpAddr, Option<Mac>> = have_neigh
        .iter()
        .filter(|n| n.state == NeighState::Permanent)
        .map(|n| (n.ip, n.mac))
        .collect();
    for (ip, mac) in want_neigh {
        if have.get(ip) != Some(&Some(*mac)) {
            changes.neigh_set.push((*ip, *mac));
        }
    }
    changes.neigh_del = have
        .keys()
        .filter(|ip| !want_neigh.contains_key(ip))
        .copied()
        .collect();

    let have_fdb: FastSet<(Mac, IpAddr)> = have_fdb
        .iter()
        .filter_map(|f| Some((f.mac, f.dst?)))
        .collect();
    changes.fdb_set = want_fdb.difference(&have_fdb).copied().collect();
    // A replaced entry (same MAC, new remote) takes the old one's place, so
    // only remotes that no desired entry overwrites need a delete.
    let replaced: FastSet<Mac> = changes.fdb_set.iter().map(|(m, _)| *m).collect();
    changes.fdb_del = have_fdb
        .difference(want_fdb)
        .filter(|(m, _)| !replaced.contains(m))
        .copied()
        .collect();
    changes
}

pub async fn apply_additions<K: Kernel>(nl: &K, c: &EntryChanges, report: &mut ApplyReport) {
    if !c.neigh_set.is_empty() {
        let r = nl.replace_neighbours(c.index, &c.neigh_set).await;
        note(
            report,
            &c.neigh_set,
            r,
            |r| &mut r.neighbours_set,
            false,
            |(ip, mac)| format!("neighbour {ip} lladdr {mac}"),
        );
    }
    if !c.fdb_set.is_empty() {
        let r = nl.replace_fdbs(c.index, &c.fdb_set).await;
        note(
            report,
            &c.fdb_set,
            r,
            |r| &mut r.fdb_set,
            false,
            |(mac, dst)| format!("FDB entry {mac} dst {dst}"),
        );
    }
}

pub async fn apply_removals<K: Kernel>(nl: &K, c: &EntryChanges, report: &mut ApplyReport) {
    if !c.neigh_del.is_empty() {
        let r = nl.delete_neighbours(c.index, &c.neigh_del).await;
        note(
            report,
            &c.neigh_del,
            r,
            |r| &mut r.neighbours_deleted,
            true,
            |ip| format!("deleting neighbour {ip}"),
        );
    }
    if !c.fdb_del.is_empty() {
        let r = nl.delete_fdbs(c.index, &c.fdb_del).await;
        note(
            report,
            &c.fdb_del,
            r,
            |r| &mut r.fdb_deleted,
            true,
            |(mac, dst)| format!("deleting FDB entry {mac} dst {dst}"),
        );
    }
}
