//! etcd v3 under the [`Kv`] seam, with flannel's key layout.
//!
//! TTLs are etcd leases, one per key as flannel makes them; a rewrite grants
//! a fresh lease and revokes the old one so that renewals leave nothing
//! behind.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

use crate::kv::{Kv, KvEntry, KvError, KvEvent, KvWatch, Listing, Ttl};

/// How to reach etcd: flanneld's `--etcd-*` flags.
#[derive(Clone, Default)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("cafile", &self.cafile)
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A connected etcd client.
#[derive(Clone)]
pub struct EtcdKv {
    client: Client,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, KvError> {
    std::fs::read(path).map_err(|e| {
        KvError::refused(format!("cannot read {what} {}: {e}", path.display())).because(e)
    })
}

fn tls_options(opts: &EtcdOptions) -> Result<Option<TlsOptions>, KvError> {
    if opts.cafile.is_none() && opts.certfile.is_none() && opts.keyfile.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    match &opts.cafile {
        Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(read(ca, "--etcd-cafile")?)),
        None => {
            return Err(KvError::refused(
                "TLS to etcd needs --etcd-cafile: weft does not trust the system's roots for etcd",
            ));
        }
    }
    match (&opts.certfile, &opts.keyfile) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read(cert, "--etcd-certfile")?,
                read(key, "--etcd-keyfile")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(KvError::refused(
                "--etcd-certfile and --etcd-keyfile must be given together",
            ));
        }
    }
    Ok(Some(tls))
}

/// Maps client errors: gRPC codes that retrying cannot fix are `Refused`,
/// everything else (transport, timeouts, no leader) `Unavailable`; the
/// client's error is kept as the source.
fn kv_err(e: etcd_client::Error) -> KvError {
    use etcd_client::Error as E;
    let mapped = match &e {
        E::GRpcStatus(status) => {
            use tonic_code::*;
            let code = status.code() as i32;
            let msg = status.message();
            if matches!(
                code,
                INVALID_ARGUMENT | PERMISSION_DENIED | UNAUTHENTICATED | FAILED_PRECONDITION
            ) {
                KvError::refused(format!("etcd refused the request: {msg}"))
            } else {
                KvError::unavailable(format!("etcd: {msg}"))
            }
        }
        E::InvalidArgs(m) => KvError::refused(format!("invalid etcd option: {m}")),
        E::InvalidUri(u) => KvError::refused(format!("invalid etcd endpoint: {u}")),
        other => KvError::unavailable(other.to_string()),
    };
    mapped.because(e)
}

/// gRPC status codes (stable numbers from the gRPC spec).
mod tonic_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn entry(kv: &etcd_client::KeyValue) -> KvEntry {
    KvEntry {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_rev: kv.create_revision(),
        mod_rev: kv.mod_revision(),
        expires: kv.lease() != 0,
    }
}

impl EtcdKv {
    /// Connects lazily: an unreachable etcd is reported by the first
    /// request, which the callers retry. Bad options fail here.
    pub async fn connect(opts: &EtcdOptions) -> Result<EtcdKv, KvError> {
        if opts.endpoints.is_empty() {
            return Err(KvError::refused(
                "no etcd endpoints given (--etcd-endpoints)",
            ));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = tls_options(opts)? {
            connect = connect.with_tls(tls);
        }
        match (&opts.username, &opts.password) {
            (Some(u), p) if !u.is_empty() => {
                connect = connect.with_user(u.clone(), p.clone().unwrap_or_default());
            }
            _ => {}
        }
        let client = Client::connect(&opts.endpoints, Some(connect))
            .await
            .map_err(kv_err)?;
        Ok(EtcdKv { client })
    }

    /// The raw client, for tests and tools.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    async fn grant(&self, ttl: Ttl) -> Result<i64, KvError> {
        match ttl {
            Ttl::Forever => Ok(0),
            Ttl::For(d) => {
                let secs = d.as_secs().max(1) as i64;
                let resp = self
                    .client
                    .clone()
                    .lease_grant(secs, None)
                    .await
                    .map_err(kv_err)?;
                Ok(resp.id())
            }
        }
    }

    async fn revoke(&self, lease: i64) {
        if lease != 0 {
            // Best effort: an unrevoked lease with no keys just expires.
            let _ = self.client.clone().lease_revoke(lease).await;
        }
    }

    /// Runs a conditional write made under the fresh `lease`; when it does
    /// not go through, the lease is revoked so that nothing is left behind.
    async fn commit_or_revoke(&self, txn: Txn, lease: i64) -> Result<bool, KvError> {
        match self.client.clone().txn(txn).await {
            Ok(resp) if resp.succeeded() => Ok(true),
            Ok(_) => {
                self.revoke(lease).await;
                Ok(false)
            }
            Err(e) => {
                self.revoke(lease).await;
                Err(kv_err(e))
            }
        }
    }

    fn put_op(key: &str, value: &[u8], lease: i64) -> TxnOp {
        let opts = (lease != 0).then(|| PutOptions::new().with_lease(lease));
        TxnOp::put(key, value.to_vec(), opts)
    }
}

impl Kv for EtcdKv {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>, KvError> {
        let resp = self.client.clone().get(key, None).await.map_err(kv_err)?;
        Ok(resp.kvs().first().map(entry))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, KvError> {
        let resp = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(kv_err)?;
        Ok(Listing {
            revision: resp.header().map_or(0, |h| h.revision()),
            entries: resp.kvs().iter().map(entry).collect(),
        })
    }

    async fn create_if_unchanged(
        &self,
        dir: &str,
        since_rev: i64,
        key: &str,
        value: &[u8],
        ttl: Ttl,
    ) -> Result<bool, KvError> {
        let lease = self.grant(ttl).await?;
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Equal, 0),
                Compare::mod_revision(dir, CompareOp::Less, since_rev + 1).with_prefix(),
            ])
            .and_then([Self::put_op(key, value, lease)]);
        self.commit_or_revoke(txn, lease).await
    }

    async fn replace(
        &self,
        key: &str,
        mod_rev: i64,
        value: &[u8],
        ttl: Ttl,
    ) -> Result<bool, KvError> {
        let old_lease = match self
            .client
            .clone()
            .get(key, None)
            .await
            .map_err(kv_err)?
            .kvs()
            .first()
        {
            Some(kv) if kv.mod_revision() == mod_rev => kv.lease(),
            _ => return Ok(false),
        };
        let lease = self.grant(ttl).await?;
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_rev)])
            .and_then([Self::put_op(key, value, lease)]);
        let written = self.commit_or_revoke(txn, lease).await?;
        if written && old_lease != lease {
            self.revoke(old_lease).await;
        }
        Ok(written)
    }

    async fn delete(&self, key: &str, mod_rev: i64) -> Result<bool, KvError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_rev)])
            .and_then([TxnOp::delete(key, None)]);
        let resp = self.client.clone().txn(txn).await.map_err(kv_err)?;
        Ok(resp.succeeded())
    }

    async fn watch(&self, prefix: &str, from_rev: i64) -> Result<impl KvWatch, KvError> {
        let stream = self
            .client
            .clone()
            .watch(
                prefix,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(from_rev),
                ),
            )
            .await
            .map_err(kv_err)?;
        Ok(EtcdWatch { stream, from_rev })
    }
}

struct EtcdWatch {
    stream: WatchStream,
    from_rev: i64,
}

impl KvWatch for EtcdWatch {
    async fn next(&mut self) -> Result<(i64, Vec<KvEvent>), KvError> {
        loop {
            let msg = self
                .stream
                .message()
                .await
                .map_err(kv_err)?
                .ok_or_else(|| KvError::unavailable("etcd closed the watch stream"))?;
            if msg.compact_revision() != 0 {
                return Err(KvError::Compacted {
                    requested: self.from_rev,
                    compacted: msg.compact_revision(),
                });
            }
            if msg.canceled() {
                return Err(KvError::unavailable(format!(
                    "etcd cancelled the watch: {}",
                    msg.cancel_reason()
                )));
            }
            if msg.events().is_empty() {
                // The creation acknowledgement or a progress notification.
                continue;
            }
            let events = msg
                .events()
                .iter()
                .filter_map(|ev| {
                    let kv = ev.kv()?;
                    Some(match ev.event_type() {
                        EventType::Put => KvEvent::Put(entry(kv)),
                        EventType::Delete => KvEvent::Delete {
                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                            mod_rev: kv.mod_revision(),
                        },
                    })
                })
                .collect();
            let revision = msg.header().map_or(0, |h| h.revision());
            self.from_rev = revision + 1;
            return Ok((revision, events));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's error stays behind the message, typed.
    #[test]
    fn client_errors_keep_their_source() {
        let e = kv_err(etcd_client::Error::InvalidArgs("no".into()));
        assert_eq!(e.to_string(), "invalid etcd option: no");
        assert!(!e.is_retryable());
        let source =
            std::error::Error::source(&e).and_then(|s| s.downcast_ref::<etcd_client::Error>());
        assert!(
            matches!(source, Some(etcd_client::Error::InvalidArgs(_))),
            "{e:?}"
        );
        let gone = kv_err(etcd_client::Error::WatchError("stream reset".into()));
        assert!(gone.is_retryable(), "{gone}");
    }
}
