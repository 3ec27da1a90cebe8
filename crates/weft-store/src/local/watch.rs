//! Watching the local file: polls the event log from a revision.

use std::time::Duration;

use rusqlite::params;

use super::LocalKv;
use super::expiry::{has_expired, sweep};
use crate::kv::{KvEntry, KvError, KvEvent, KvWatch};

/// How often a watch looks for new events. Cheap: one indexed query.
const POLL: Duration = Duration::from_millis(50);

pub(super) struct LocalWatch {
    pub(super) kv: LocalKv,
    pub(super) prefix: String,
    pub(super) from_rev: i64,
}

/// What one poll of the event log found.
enum Poll {
    Compacted(i64),
    Events(i64, Vec<KvEvent>),
}

impl KvWatch for LocalWatch {
    async fn next(&mut self) -> Result<(i64, Vec<KvEvent>), KvError> {
        loop {
            let (prefix, from_rev) = (self.prefix.clone(), self.from_rev);
            let outage = self.kv.outage.clone();
            let poll = self
                .kv
                .with(move |conn| {
                    if has_expired(conn)? {
                        let tx = outage.begin(conn)?;
                        sweep(&tx, &outage)?;
                        tx.commit()?;
                    }
                    // One read transaction: the revision and the events
                    // come from the same snapshot of the file.
                    let tx = conn.transaction()?;
                    let (revision, compacted): (i64, i64) = tx.query_row(
                        "SELECT revision, compacted FROM meta WHERE id = 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    if from_rev <= compacted {
                        return Ok(Poll::Compacted(compacted));
                    }
                    let events = {
                        let mut stmt = tx.prepare(
                            "SELECT rev, key, value, create_rev, expires FROM events \
                             WHERE rev >= ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY rev",
                        )?;
                        let rows = stmt.query_map(params![from_rev, prefix], |r| {
                            let rev: i64 = r.get(0)?;
                            let key: String = r.get(1)?;
                            let value: Option<Vec<u8>> = r.get(2)?;
                            Ok(match value {
                                Some(value) => KvEvent::Put(KvEntry {
                                    key,
                                    value,
                                    create_rev: r.get(3)?,
                                    mod_rev: rev,
                                    expires: r.get(4)?,
                                }),
                                None => KvEvent::Delete { key, mod_rev: rev },
                            })
                        })?;
                        rows.collect::<rusqlite::Result<Vec<_>>>()?
                    };
                    tx.commit()?;
                    Ok(Poll::Events(revision, events))
                })
                .await?;
            match poll {
                Poll::Compacted(compacted) => {
                    return Err(KvError::Compacted {
                        requested: self.from_rev,
                        compacted,
                    });
                }
                Poll::Events(revision, events) => {
                    // Revisions outside the prefix still advance the cursor.
                    self.from_rev = revision + 1;
                    if !events.is_empty() {
                        return Ok((revision, events));
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
