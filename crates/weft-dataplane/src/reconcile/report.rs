//! What one reconcile pass changed, by kind: logged, exported as metrics,
//! and asserted by tests ("a second pass changes nothing").

use std::fmt;
use std::sync::Arc;

use crate::netlink::NetlinkError;

/// One kernel object a pass could not change; the next pass retries it.
/// Keeps the kernel's error as its source (shared, so reports stay
/// cheap to clone).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{object}: {source}")]
pub struct EntryError {
    /// What it was about: `route 10.244.2.0/24`, `deleting route …`, a
    /// neighbour or FDB entry.
    pub object: String,
    #[source]
    pub source: Arc<NetlinkError>,
}

impl EntryError {
    pub fn new(object: impl Into<String>, source: NetlinkError) -> EntryError {
        EntryError {
            object: object.into(),
            source: Arc::new(source),
        }
    }

    /// Whether the next pass may succeed where this one failed: a missing
    /// object or a refusal of the moment, not a request this kernel
    /// cannot take at all (a feature it lacks, input it rejects).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            *self.source,
            NetlinkError::NotSupported { .. } | NetlinkError::InvalidInput { .. }
        )
    }
}

impl PartialEq for EntryError {
    fn eq(&self, other: &EntryError) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for EntryError {}

/// Counts of kernel changes made by one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub devices_created: u32,
    pub devices_recreated: u32,
    pub devices_deleted: u32,
    pub devices_updated: u32,
    pub addresses_changed: u32,
    pub routes_set: u32,
    pub routes_deleted: u32,
    pub neighbours_set: u32,
    pub neighbours_deleted: u32,
    pub fdb_set: u32,
    pub fdb_deleted: u32,
    /// Entries that could not be applied; the next pass retries them.
    pub errors: Vec<EntryError>,
}

impl ApplyReport {
    /// Total kernel changes.
    pub fn changes(&self) -> u32 {
        self.devices_created
            + self.devices_recreated
            + self.devices_deleted
            + self.devices_updated
            + self.addresses_changed
            + self.routes_set
            + self.routes_deleted
            + self.neighbours_set
            + self.neighbours_deleted
            + self.fdb_set
            + self.fdb_deleted
    }

    /// Adds `other`'s counters (not its errors) to this report: a pass
    /// made of a fast path and a full pass reports each change once.
    pub fn add_counts(&mut self, other: &ApplyReport) {
        self.devices_created += other.devices_created;
        self.devices_recreated += other.devices_recreated;
        self.devices_deleted += other.devices_deleted;
        self.devices_updated += other.devices_updated;
        self.addresses_changed += other.addresses_changed;
        self.routes_set += other.routes_set;
        self.routes_deleted += other.routes_deleted;
        self.neighbours_set += other.neighbours_set;
        self.neighbours_deleted += other.neighbours_deleted;
        self.fdb_set += other.fdb_set;
        self.fdb_deleted += other.fdb_deleted;
    }

    /// The counters as `(kind, count)` pairs, for metrics.
    pub fn by_kind(&self) -> [(&'static str, u32); 11] {
        [
            ("device_created", self.devices_created),
            ("device_recreated", self.devices_recreated),
            ("device_deleted", self.devices_deleted),
            ("device_updated", self.devices_updated),
            ("address", self.addresses_changed),
            ("route_set", self.routes_set),
            ("route_deleted", self.routes_deleted),
            ("neighbour_set", self.neighbours_set),
            ("neighbour_deleted", self.neighbours_deleted),
            ("fdb_set", self.fdb_set),
            ("fdb_deleted", self.fdb_deleted),
        ]
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .by_kind()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        if parts.is_empty() {
            f.write_str("no changes")?;
        } else {
            f.write_str(&parts.join(" "))?;
        }
        if !self.errors.is_empty() {
            write!(f, " errors={}", self.errors.len())?;
        }
        Ok(())
    }
}
