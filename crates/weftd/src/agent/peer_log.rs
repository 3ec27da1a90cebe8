//! One log line per peer that arrived, moved or left, instead of one line
//! per reconcile pass: what an operator reading `journalctl` wants to see
//! is which node changed, not how many kernel objects a pass touched.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use weft_core::fast_hash::{FastMap, FastSet};
use weft_core::lease::{Lease, LeaseSubnets};
use weft_store::PeerSnapshot;

/// At most this many peer lines per snapshot; a relist of a large cluster
/// gets a count for the rest instead of thousands of lines.
const MAX_LINES: usize = 20;

/// What changed about one peer between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    Added {
        id: String,
        lease: PeerFacts,
    },
    /// Same store id, different endpoint: a node that rebooted with a new
    /// address, a new VTEP MAC or a new WireGuard key.
    Moved {
        id: String,
        from: PeerFacts,
        to: PeerFacts,
    },
    Removed {
        id: String,
        lease: PeerFacts,
    },
}

/// The parts of a peer lease a log line names. Kept small (the backend
/// data only as a hash): the agent holds one per peer, thousands of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFacts {
    subnets: LeaseSubnets,
    public_ip: Option<Ipv4Addr>,
    public_ipv6: Option<Ipv6Addr>,
    backend_type: String,
    backend_data: u64,
}

impl PeerFacts {
    fn of(lease: &Lease) -> PeerFacts {
        let mut h = DefaultHasher::new();
        lease.attrs.backend_data.hash(&mut h);
        lease.attrs.backend_v6_data.hash(&mut h);
        PeerFacts {
            subnets: lease.subnets,
            public_ip: lease.attrs.public_ip,
            public_ipv6: lease.attrs.public_ipv6,
            backend_type: lease.attrs.backend_type.clone(),
            backend_data: h.finish(),
        }
    }

    fn endpoint(&self) -> String {
        match (self.public_ip, self.public_ipv6) {
            (Some(a), Some(b)) => format!("{a},{b}"),
            (Some(a), None) => a.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => "no public IP".to_owned(),
        }
    }
}

impl fmt::Display for PeerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerChange::Added { id, lease } => write!(
                f,
                "peer added: {id} ({} at {})",
                lease.subnets,
                lease.endpoint()
            ),
            PeerChange::Removed { id, lease } => write!(
                f,
                "peer removed: {id} ({} at {})",
                lease.subnets,
                lease.endpoint()
            ),
            PeerChange::Moved { id, from, to } => {
                write!(f, "peer changed: {id} (")?;
                let mut parts = Vec::new();
                if from.subnets != to.subnets {
                    parts.push(format!("{} → {}", from.subnets, to.subnets));
                }
                if from.endpoint() != to.endpoint() {
                    parts.push(format!("{} → {}", from.endpoint(), to.endpoint()));
                }
                if from.backend_type != to.backend_type {
                    parts.push(format!(
                        "backend {} → {}",
                        from.backend_type, to.backend_type
                    ));
                } else if from.backend_data != to.backend_data {
                    parts.push("new backend data".to_owned());
                }
                write!(f, "{})", parts.join(", "))
            }
        }
    }
}

/// What [`PeerLog::observe`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    /// The first snapshot: only its size is worth a line.
    First {
        peers: usize,
    },
    Changes(Vec<PeerChange>),
}

/// The last snapshot seen. Holding it costs nothing (the status and the
/// watch channel hold the same `Arc`), where a map of its own was a fourth
/// copy of every peer and cost milliseconds per pass to rebuild.
#[derive(Default)]
pub struct PeerLog {
    last: Option<Arc<PeerSnapshot>>,
}

/// Whether a peer's lease says anything new: its subnets, addresses or
/// backend (the expiration moves with every renewal and says nothing).
fn same_peer(a: &Lease, b: &Lease) -> bool {
    a.subnets == b.subnets && a.attrs == b.attrs
}

impl PeerLog {
    /// Compares `snapshot` with the previous one and remembers it.
    pub fn observe(&mut self, snapshot: &Arc<PeerSnapshot>) -> Observed {
        let accepted = &snapshot.peers.accepted;
        let Some(before) = self.last.replace(Arc::clone(snapshot)) else {
            return Observed::First {
                peers: accepted.len(),
            };
        };
        if Arc::ptr_eq(&before, snapshot) {
            return Observed::Changes(Vec::new());
        }
        let old: FastMap<&str, &Lease> = before
            .peers
            .accepted
            .iter()
            .map(|(id, lease)| (id.as_str(), lease))
            .collect();
        let mut changes = Vec::new();
        let mut added = 0;
        for (id, lease) in accepted {
            match old.get(id.as_str()) {
                None => {
                    added += 1;
                    changes.push(PeerChange::Added {
                        id: id.clone(),
                        lease: PeerFacts::of(lease),
                    });
                }
                Some(was) if !same_peer(was, lease) => changes.push(PeerChange::Moved {
                    id: id.clone(),
                    from: PeerFacts::of(was),
                    to: PeerFacts::of(lease),
                }),
                Some(_) => {}
            }
        }
        // Store ids are unique: every old peer was seen again unless fewer
        // than all of them were.
        if accepted.len() - added < old.len() {
            let now: FastSet<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
            let mut removed: Vec<(&str, &Lease)> = old
                .into_iter()
                .filter(|(id, _)| !now.contains(id))
                .collect();
            removed.sort_by_key(|(id, _)| *id);
            changes.extend(removed.into_iter().map(|(id, lease)| PeerChange::Removed {
                id: id.to_owned(),
                lease: PeerFacts::of(lease),
            }));
        }
        Observed::Changes(changes)
    }
}

/// Logs what [`PeerLog::observe`] found; true if any peer changed.
pub fn log(observed: &Observed) -> bool {
    match observed {
        Observed::First { peers } => {
            tracing::info!(peers, "{peers} peer(s) in the first snapshot");
            true
        }
        Observed::Changes(changes) => {
            for change in changes.iter().take(MAX_LINES) {
                tracing::info!("{change}");
            }
            if changes.len() > MAX_LINES {
                tracing::info!("… and {} more peer change(s)", changes.len() - MAX_LINES);
            }
            !changes.is_empty()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weft_core::lease::LeaseAttrs;

    fn lease(subnet: &str, ip: &str) -> Lease {
        Lease {
            subnets: LeaseSubnets {
                v4: Some(subnet.parse().unwrap()),
                v6: None,
            },
            attrs: LeaseAttrs {
                public_ip: Some(ip.parse().unwrap()),
                backend_type: "vxlan".to_owned(),
                ..LeaseAttrs::default()
            },
            expiration: None,
        }
    }

    fn snap(peers: &[(String, Lease)]) -> Arc<PeerSnapshot> {
        Arc::new(PeerSnapshot {
            revision: 1,
            peers: Arc::new(weft_core::peer::ScreenedPeers {
                accepted: peers.to_vec(),
                rejected: Vec::new(),
            }),
            own_present: true,
            skipped_total: Default::default(),
            watch_restarts: Default::default(),
            arrived: Vec::new(),
        })
    }

    fn lines(observed: &Observed) -> Vec<String> {
        match observed {
            Observed::First { .. } => panic!("not the first snapshot"),
            Observed::Changes(c) => c.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn added_moved_and_removed_peers_get_one_line_each() {
        let mut log = PeerLog::default();
        let a = ("node-a".to_owned(), lease("10.244.1.0/24", "192.0.2.1"));
        let b = ("node-b".to_owned(), lease("10.244.2.0/24", "192.0.2.2"));
        assert_eq!(
            log.observe(&snap(&[a.clone(), b.clone()])),
            Observed::First { peers: 2 }
        );
        // The same peers again (a renewal, a resync): nothing to say.
        assert_eq!(
            lines(&log.observe(&snap(&[a.clone(), b.clone()]))),
            Vec::<String>::new()
        );

        let moved = ("node-b".to_owned(), lease("10.244.2.0/24", "192.0.2.9"));
        let c = ("node-c".to_owned(), lease("10.244.3.0/24", "192.0.2.3"));
        assert_eq!(
            lines(&log.observe(&snap(&[moved.clone(), c]))),
            [
                "peer changed: node-b (192.0.2.2 → 192.0.2.9)",
                "peer added: node-c (10.244.3.0/24 at 192.0.2.3)",
                "peer removed: node-a (10.244.1.0/24 at 192.0.2.1)",
            ]
        );
    }

    #[test]
    fn new_backend_data_is_a_change() {
        let mut log = PeerLog::default();
        let before = ("node-a".to_owned(), lease("10.244.1.0/24", "192.0.2.1"));
        let mut after = before.clone();
        after.1.attrs.backend_data = Some(
            weft_core::lease::RawJson::parse(r#"{"VNI":1,"VtepMAC":"0e:00:00:00:00:02"}"#).unwrap(),
        );
        log.observe(&snap(&[before]));
        assert_eq!(
            lines(&log.observe(&snap(&[after]))),
            ["peer changed: node-a (new backend data)"]
        );
    }

    #[test]
    fn a_renewal_or_the_same_snapshot_is_no_change() {
        let mut log = PeerLog::default();
        let a = ("node-a".to_owned(), lease("10.244.1.0/24", "192.0.2.1"));
        let first = snap(std::slice::from_ref(&a));
        log.observe(&first);
        assert_eq!(lines(&log.observe(&first)), Vec::<String>::new());
        let mut renewed = a.clone();
        renewed.1.expiration = Some(std::time::SystemTime::now());
        assert_eq!(lines(&log.observe(&snap(&[renewed]))), Vec::<String>::new());
        // Only removals: the removal scan must still run.
        assert_eq!(
            lines(&log.observe(&snap(&[]))),
            ["peer removed: node-a (10.244.1.0/24 at 192.0.2.1)"]
        );
    }
}
