//! A lease store in one SQLite file, for a single host and for the lab,
//! where several agents in network namespaces share the file.
//!
//! It keeps etcd's model so that the lease logic above it is the same code:
//! a global revision bumped by every write, create and modify revisions per
//! key, an expiry time per key (none for reservations), and an event log
//! that a watch reads from a revision. Expired keys are swept inside write
//! transactions and by watchers, each sweep logged as a delete event, so
//! every agent sees a dead node's lease disappear. SQLite's WAL mode and
//! `BEGIN IMMEDIATE` make the compare-and-swap writes safe across processes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::kv::{Kv, KvEntry, KvError, KvWatch, Listing, Ttl};

mod expiry;
mod watch;

use expiry::{Outage, sweep};
use watch::LocalWatch;

/// Events kept for watchers; older history is compacted, and a watcher that
/// fell that far behind lists again.
const EVENTS_KEPT: i64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (1, 1, 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    expires_at_ms INTEGER,
    ttl_ms INTEGER
);
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    rev INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB,
    create_rev INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
";

/// A handle on the lease file. Cheap to clone.
#[derive(Clone)]
pub struct LocalKv {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    outage: Outage,
}

pub(super) fn sql_err(e: rusqlite::Error) -> KvError {
    use rusqlite::ErrorCode;
    let mapped = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            KvError::unavailable(format!("the lease file is locked by another process: {e}"))
        }
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::NotADatabase) => {
            KvError::refused(format!("cannot use the lease file: {e}"))
        }
        _ => KvError::unavailable(format!("lease file: {e}")),
    };
    mapped.because(e)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn expiry(ttl: Ttl) -> Option<i64> {
    ttl_ms(ttl).map(|t| now_ms() + t)
}

fn ttl_ms(ttl: Ttl) -> Option<i64> {
    match ttl {
        Ttl::For(d) => Some(d.as_millis() as i64),
        Ttl::Forever => None,
    }
}

/// Files made before the TTL column existed get it.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    if conn.prepare("SELECT ttl_ms FROM kv LIMIT 0").is_err() {
        conn.execute_batch("ALTER TABLE kv ADD COLUMN ttl_ms INTEGER")?;
    }
    Ok(())
}

/// Starts a revision: bumps the counter and returns the new value.
pub(super) fn bump(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<i64> {
    tx.query_row(
        "UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        [],
        |r| r.get(0),
    )
}

pub(super) fn log_event(
    tx: &rusqlite::Transaction<'_>,
    rev: i64,
    key: &str,
    value: Option<&[u8]>,
    create_rev: i64,
    expires: bool,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events (rev, key, value, create_rev, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![rev, key, value, create_rev, expires],
    )?;
    let floor = rev - EVENTS_KEPT;
    if floor > 0 && rev % 256 == 0 {
        tx.execute("DELETE FROM events WHERE rev <= ?1", params![floor])?;
        tx.execute(
            "UPDATE meta SET compacted = ?1 WHERE id = 1",
            params![floor],
        )?;
    }
    Ok(())
}

/// Stores `key` as written at `rev` and logs the event: the last step of
/// every write, so that the row and its event always agree. `create_rev`
/// is `rev` for a new key and the key's own for a rewrite.
fn store_key(
    tx: &rusqlite::Transaction<'_>,
    rev: i64,
    key: &str,
    value: &[u8],
    create_rev: i64,
    ttl: Ttl,
) -> rusqlite::Result<()> {
    let exp = expiry(ttl);
    tx.execute(
        "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, expires_at_ms, ttl_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key, value, create_rev, rev, exp, ttl_ms(ttl)],
    )?;
    log_event(tx, rev, key, Some(value), create_rev, exp.is_some())
}

/// The create revision of `key` if it is still at `mod_rev`: the
/// compare-and-swap check of a rewrite or delete.
fn create_rev_at(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    mod_rev: i64,
) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT create_rev FROM kv WHERE key = ?1 AND mod_rev = ?2",
        params![key, mod_rev],
        |r| r.get(0),
    )
    .optional()
}

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<KvEntry> {
    let expires_at: Option<i64> = r.get(4)?;
    Ok(KvEntry {
        key: r.get(0)?,
        value: r.get(1)?,
        create_rev: r.get(2)?,
        mod_rev: r.get(3)?,
        expires: expires_at.is_some(),
    })
}

const LIVE: &str = "(expires_at_ms IS NULL OR expires_at_ms > ?1)";

impl LocalKv {
    /// Opens (creating if needed) the lease file and its directory.
    pub fn open(path: impl AsRef<Path>) -> Result<LocalKv, KvError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                KvError::refused(format!("cannot create {}: {e}", dir.display())).because(e)
            })?;
        }
        let conn = Connection::open(&path).map_err(sql_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
        // Switching a new file to WAL needs an exclusive lock, and SQLite
        // reports SQLITE_BUSY for it at once, without waiting out the busy
        // timeout: several agents opening a fresh file together (the lab)
        // would fail. Retry for a while instead.
        let mut delay = Duration::from_millis(5);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let setup = conn
                .pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
                .and_then(|()| conn.execute_batch(SCHEMA));
            match setup {
                Ok(()) => break,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(sql_err(e)),
            }
        }
        migrate(&conn).map_err(sql_err)?;
        Ok(LocalKv {
            path,
            conn: Arc::new(Mutex::new(conn)),
            outage: Outage::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection in a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T, KvError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let outage = self.outage.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut guard = conn
                .lock()
                .map_err(|_| KvError::unavailable("lease file handle poisoned"))?;
            f(&mut guard).map_err(|e| {
                if is_busy(&e) {
                    outage.failed(started);
                }
                sql_err(e)
            })
        })
        .await
        .map_err(|e| KvError::unavailable(format!("lease file worker failed: {e}")).because(e))?
    }

    /// Runs `f` in a write transaction after sweeping expired keys.
    async fn write<T, F>(&self, f: F) -> Result<T, KvError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let outage = self.outage.clone();
        self.with(move |conn| {
            let tx = outage.begin(conn)?;
            sweep(&tx, &outage)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Writes a key unconditionally, as `etcdctl put` would: for tests and
    /// operators (reservations are written this way, with `Ttl::Forever`).
    pub async fn put(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<(), KvError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write(move |tx| {
            let rev = bump(tx)?;
            let create_rev: i64 = tx
                .query_row(
                    "SELECT create_rev FROM kv WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(rev);
            store_key(tx, rev, &key, &value, create_rev, ttl)
        })
        .await
    }
}

impl Kv for LocalKv {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>, KvError> {
        let key = key.to_owned();
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT key, value, create_rev, mod_rev, expires_at_ms FROM kv WHERE key = ?2 AND {LIVE}"),
                params![now_ms(), key],
                row_entry,
            )
            .optional()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, KvError> {
        let prefix = prefix.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let revision: i64 =
                tx.query_row("SELECT revision FROM meta WHERE id = 1", [], |r| r.get(0))?;
            let entries = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT key, value, create_rev, mod_rev, expires_at_ms FROM kv \
                     WHERE substr(key, 1, length(?2)) = ?2 AND {LIVE} ORDER BY key"
                ))?;
                let rows = stmt.query_map(params![now_ms(), prefix], row_entry)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            Ok(Listing { revision, entries })
        })
        .await
    }

    async fn create_if_unchanged(
        &self,
        dir: &str,
        since_rev: i64,
        key: &str,
        value: &[u8],
        ttl: Ttl,
    ) -> Result<bool, KvError> {
        let (dir, key, value) = (dir.to_owned(), key.to_owned(), value.to_vec());
        self.write(move |tx| {
            let newest: i64 = tx.query_row(
                "SELECT COALESCE(MAX(mod_rev), 0) FROM kv WHERE substr(key, 1, length(?1)) = ?1",
                params![dir],
                |r| r.get(0),
            )?;
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM kv WHERE key = ?1)",
                params![key],
                |r| r.get(0),
            )?;
            if newest > since_rev || exists {
                return Ok(false);
            }
            let rev = bump(tx)?;
            store_key(tx, rev, &key, &value, rev, ttl)?;
            Ok(true)
        })
        .await
    }

    async fn replace(
        &self,
        key: &str,
        mod_rev: i64,
        value: &[u8],
        ttl: Ttl,
    ) -> Result<bool, KvError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write(move |tx| {
            let Some(create_rev) = create_rev_at(tx, &key, mod_rev)? else {
                return Ok(false);
            };
            let rev = bump(tx)?;
            store_key(tx, rev, &key, &value, create_rev, ttl)?;
            Ok(true)
        })
        .await
    }

    async fn delete(&self, key: &str, mod_rev: i64) -> Result<bool, KvError> {
        let key = key.to_owned();
        self.write(move |tx| {
            let Some(create_rev) = create_rev_at(tx, &key, mod_rev)? else {
                return Ok(false);
            };
            let rev = bump(tx)?;
            tx.execute("DELETE FROM kv WHERE key = ?1", params![key])?;
            log_event(tx, rev, &key, None, create_rev, false)?;
            Ok(true)
        })
        .await
    }

    async fn watch(&self, prefix: &str, from_rev: i64) -> Result<impl KvWatch, KvError> {
        Ok(LocalWatch {
            kv: self.clone(),
            prefix: prefix.to_owned(),
            from_rev,
        })
    }
}
