//! Lease expiry in the local file: keys past their time are deleted (with a
//! delete event each) inside write transactions and by watchers.
//!
//! When the file was unavailable to this process for a while (another
//! process held it locked), every lease is given a full TTL again before
//! anything is swept: the nodes could not renew meanwhile, and deleting
//! their leases now would tear down routes for no reason. etcd does the
//! same when it comes back (its lessor refreshes every lease on promotion).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::{bump, log_event, now_ms};

/// Outages shorter than this need no refresh: a renewal is due only every
/// half TTL, and the shortest TTL weft accepts is 5 s.
const OUTAGE_WORTH_A_REFRESH: Duration = Duration::from_secs(1);

/// When this process first failed to use the file, shared by every handle.
#[derive(Clone, Default)]
pub(super) struct Outage(Arc<Mutex<Option<Instant>>>);

impl Outage {
    /// An operation that started at `started` failed because the file was
    /// locked: the outage began no later than that.
    pub(super) fn failed(&self, started: Instant) {
        if let Ok(mut since) = self.0.lock() {
            *since = Some(since.map_or(started, |s| s.min(started)));
        }
    }

    /// Opens a write transaction, counting a long wait for the lock (the
    /// busy timeout absorbed another process's lock) as an outage too.
    pub(super) fn begin<'c>(
        &self,
        conn: &'c mut Connection,
    ) -> rusqlite::Result<rusqlite::Transaction<'c>> {
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if started.elapsed() >= OUTAGE_WORTH_A_REFRESH {
            self.failed(started);
        }
        Ok(tx)
    }

    /// Clears the outage; true if it lasted long enough to refresh leases.
    fn take_long(&self) -> bool {
        match self.0.lock() {
            Ok(mut since) => since
                .take()
                .is_some_and(|s| s.elapsed() >= OUTAGE_WORTH_A_REFRESH),
            Err(_) => false,
        }
    }
}

/// Gives every lease a full TTL again from now.
fn refresh(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<usize> {
    tx.execute(
        "UPDATE kv SET expires_at_ms = MAX(expires_at_ms, ?1 + ttl_ms) \
         WHERE expires_at_ms IS NOT NULL AND ttl_ms IS NOT NULL",
        params![now_ms()],
    )
}

/// Deletes expired keys, one delete event each.
pub(super) fn sweep(tx: &rusqlite::Transaction<'_>, outage: &Outage) -> rusqlite::Result<()> {
    if outage.take_long() {
        let n = refresh(tx)?;
        tracing::warn!(
            leases = n,
            "the lease file was unavailable for a while: every lease gets a full TTL again before expiry is checked"
        );
    }
    let expired: Vec<(String, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT key, create_rev FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
        )?;
        let rows = stmt.query_map(params![now_ms()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (key, create_rev) in expired {
        let rev = bump(tx)?;
        tx.execute("DELETE FROM kv WHERE key = ?1", params![key])?;
        log_event(tx, rev, &key, None, create_rev, true)?;
    }
    Ok(())
}

pub(super) fn has_expired(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM kv WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1)",
        params![now_ms()],
        |r| r.get(0),
    )
}
