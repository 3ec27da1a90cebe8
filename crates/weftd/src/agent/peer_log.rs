//! One log line per peer that arrived, moved or left, instead of one line
//! per reconcile pass: what an operator reading `journalctl` wants to see
//! is which node changed, not how many kernel objects a pass touched.

use std::collections::HashMap;
use std::fmt;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

use weft_core::lease::{Lease, LeaseSubnets};

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

/// The peers of the last snapshot, by store id.
#[derive(Default)]
pub struct PeerLog {
    known: Option<HashMap<String, PeerFacts>>,
}

impl PeerLog {
    /// Compares `accepted` with the previous snapshot and remembers it.
    pub fn observe(&mut self, accepted: &[(String, Lease)]) -> Observed {
        let now: HashMap<String, PeerFacts> = accepted
            .iter()
            .map(|(id, lease)| (id.clone(), PeerFacts::of(lease)))
            .collect();
        let Some(before) = self.known.take() else {
            self.known = Some(now);
            return Observed::First {
                peers: accepted.len(),
            };
        };
        let mut changes = Vec::new();
        for (id, _) in accepted {
            let Some(facts) = now.get(id) else { continue };
            match before.get(id) {
                None => changes.push(PeerChange::Added {
                    id: id.clone(),
                    lease: facts.clone(),
                }),
                Some(old) if old != facts => changes.push(PeerChange::Moved {
                    id: id.clone(),
                    from: old.clone(),
                    to: facts.clone(),
                }),
                Some(_) => {}
            }
        }
        let mut removed: Vec<(&String, &PeerFacts)> = before
            .iter()
            .filter(|(id, _)| !now.contains_key(*id))
            .collect();
        removed.sort_by_key(|(id, _)| *id);
        changes.extend(removed.into_iter().map(|(id, lease)| PeerChange::Removed {
            id: id.clone(),
            lease: lease.clone(),
        }));
        self.known = Some(now);
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
            log.observe(&[a.clone(), b.clone()]),
            Observed::First { peers: 2 }
        );
        // The same peers again (a renewal, a resync): nothing to say.
        assert_eq!(
            lines(&log.observe(&[a.clone(), b.clone()])),
            Vec::<String>::new()
        );

        let moved = ("node-b".to_owned(), lease("10.244.2.0/24", "192.0.2.9"));
        let c = ("node-c".to_owned(), lease("10.244.3.0/24", "192.0.2.3"));
        assert_eq!(
            lines(&log.observe(&[moved.clone(), c])),
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
        log.observe(&[before]);
        assert_eq!(
            lines(&log.observe(&[after])),
            ["peer changed: node-a (new backend data)"]
        );
    }
}
