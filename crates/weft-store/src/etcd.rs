//! etcd v3 under the [`Kv`] seam, with flannel's key layout.
//!
//! TTLs are etcd leases, one per key as flannel makes them; a rewrite grants
//! a fresh lease and revokes the old one so that renewals leave nothing
//! behind.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

use crate::etcd_members::Members;
use crate::kv::{Kv, KvEntry, KvError, KvEvent, KvWatch, Listing, Ttl};

/// How long a connect to a member may take (a partitioned member never
/// answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 ping interval on a connection with streams; etcd refuses pings
/// more often than every 5 s (`--grpc-keepalive-min-time`).
const KEEPALIVE: Duration = Duration::from_secs(6);
/// How long a ping may go unanswered before the connection is dead.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

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

/// A connected etcd client: one member in use at a time, the next one
/// when it fails (`etcd_members.rs` says when).
#[derive(Clone)]
pub struct EtcdKv {
    members: Arc<Members>,
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
        // A member that goes silent (cable cut) is found by HTTP/2 pings
        // within KEEPALIVE + KEEPALIVE_TIMEOUT while a watch runs on it;
        // idle connections send none (etcd closes connections that ping
        // without streams). require_leader: a member without a leader
        // refuses requests and cancels watches instead of serving stale
        // data, which makes the agent move on.
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEPALIVE, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
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
        // Bad endpoints fail here, before any connection is made.
        for endpoint in &opts.endpoints {
            endpoint
                .parse::<http::Uri>()
                .map_err(|e| KvError::refused(format!("invalid etcd endpoint {endpoint}: {e}")))?;
        }
        let first = (crate::random::u64() % opts.endpoints.len() as u64) as usize;
        Ok(EtcdKv {
            members: Members::new(opts.endpoints.clone(), connect, first),
        })
    }

    async fn call<T, F, Fut>(&self, op: F) -> Result<T, KvError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.members.call(op).await.map_err(kv_err)
    }

    /// The client of the member in use, for tests and tools.
    pub async fn client(&self) -> Result<Client, KvError> {
        self.members
            .client(self.members.current())
            .await
            .map_err(kv_err)
    }

    async fn grant(&self, ttl: Ttl) -> Result<i64, KvError> {
        match ttl {
            Ttl::Forever => Ok(0),
            Ttl::For(d) => {
                let secs = d.as_secs().max(1) as i64;
                let resp = self
                    .call(|mut c| async move { c.lease_grant(secs, None).await })
                    .await?;
                Ok(resp.id())
            }
        }
    }

    async fn revoke(&self, lease: i64) {
        if lease != 0 {
            // Best effort: an unrevoked lease with no keys just expires.
            let _ = self
                .call(|mut c| async move { c.lease_revoke(lease).await })
                .await;
        }
    }

    /// Runs a conditional write made under the fresh `lease`; when it does
    /// not go through, the lease is revoked so that nothing is left behind.
    async fn commit_or_revoke(&self, txn: Txn, lease: i64) -> Result<bool, KvError> {
        match self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
        {
            Ok(resp) if resp.succeeded() => Ok(true),
            Ok(_) => {
                self.revoke(lease).await;
                Ok(false)
            }
            Err(e) => {
                self.revoke(lease).await;
                Err(e)
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
        let resp = self
            .call(|mut c| async move { c.get(key, None).await })
            .await?;
        Ok(resp.kvs().first().map(entry))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, KvError> {
        let resp = self
            .call(|mut c| async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await })
            .await?;
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
            .call(|mut c| async move { c.get(key, None).await })
            .await?
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
        let resp = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(resp.succeeded())
    }

    async fn watch(&self, prefix: &str, from_rev: i64) -> Result<impl KvWatch, KvError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_rev);
        let stream = self
            .call(|mut c| {
                let options = options.clone();
                async move { c.watch(prefix, Some(options)).await }
            })
            .await?;
        Ok(EtcdWatch {
            stream,
            from_rev,
            member: self.members.current(),
            members: Arc::clone(&self.members),
        })
    }
}

struct EtcdWatch {
    stream: WatchStream,
    from_rev: i64,
    /// The member the stream runs on, left when the stream fails so that
    /// the watch resumes on another.
    member: usize,
    members: Arc<Members>,
}

impl EtcdWatch {
    fn lost(&self, why: &dyn std::fmt::Display) {
        self.members.abandon(self.member, why);
    }
}

impl KvWatch for EtcdWatch {
    async fn next(&mut self) -> Result<(i64, Vec<KvEvent>), KvError> {
        loop {
            let msg = match self.stream.message().await {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    self.lost(&"the watch stream ended");
                    return Err(KvError::unavailable("etcd closed the watch stream"));
                }
                Err(e) => {
                    self.lost(&e);
                    return Err(kv_err(e));
                }
            };
            if msg.compact_revision() != 0 {
                return Err(KvError::Compacted {
                    requested: self.from_rev,
                    compacted: msg.compact_revision(),
                });
            }
            if msg.canceled() {
                self.lost(&format!("it cancelled the watch: {}", msg.cancel_reason()));
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
