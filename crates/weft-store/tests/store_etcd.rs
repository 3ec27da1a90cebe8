//! The lease-store contract against a real etcd 3.4 server, plus what only
//! etcd has: restarts of the server, compaction, TLS and authentication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::contract::{self, PREFIX};
use common::etcd_server::{EtcdServer, make_tls};
use weft_core::etcd_key;
use weft_store::etcd::{EtcdKv, EtcdOptions};
use weft_store::kv::{Kv, KvEntry, KvError, KvWatch, Listing, Ttl};
use weft_store::{ConfigSource, KvLeaseStore, LeaseStore};

fn put_with_etcdctl(server: &EtcdServer, key: &str, value: &[u8]) {
    let value = String::from_utf8_lossy(value).into_owned();
    let out = server.etcdctl(&["put", key, &value]);
    assert!(
        out.status.success(),
        "etcdctl put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// etcdctl as a writer behind the store's back, as an operator would use it.
fn etcdctl_put(server: &EtcdServer) -> impl AsyncFn(&str, &[u8]) {
    async move |k: &str, v: &[u8]| put_with_etcdctl(server, k, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_agents_get_distinct_subnets() {
    let server = EtcdServer::start();
    let mut kvs = Vec::new();
    for _ in 0..50 {
        kvs.push(server.kv().await);
    }
    contract::concurrent_acquisitions_are_distinct(kvs).await;
}

contract::contract_tests! {
    let server = EtcdServer::start();
    restart_reuses_and_release_frees(server.kv().await);
    renewal_and_expiry(server.kv().await);
    deleted_lease_is_noticed(server.kv().await);
    reservation_is_honoured(server.kv().await, etcdctl_put(&server));
    exhausted_pool_says_how_to_grow(server.kv().await);
    malformed_entries_are_skipped(server.kv().await, etcdctl_put(&server))
        as malformed_entries_written_with_etcdctl_are_skipped;
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_values_are_flannel_bytes() {
    let server = EtcdServer::start();
    let store = contract::store(server.kv().await, Duration::from_secs(60));
    let lease = store
        .acquire(&contract::none_config(), &contract::request(2))
        .await
        .unwrap();
    let key = etcd_key::lease_key(PREFIX, &lease.subnets);
    let out = server.etcdctl(&["get", &key, "--print-value-only"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        r#"{"PublicIP":"192.0.2.2","PublicIPv6":null}"#
    );
    let lease_id = server.etcdctl(&["get", &key, "-w", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&lease_id.stdout).unwrap();
    assert_ne!(
        json["kvs"][0]["lease"],
        serde_json::Value::Null,
        "the key must carry an etcd lease (TTL)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_config_is_awaited_until_written() {
    let server = EtcdServer::start();
    let store = Arc::new(KvLeaseStore::new(
        server.kv().await,
        PREFIX,
        ConfigSource::StoreKey,
        Duration::from_secs(60),
    ));
    let reader = {
        let store = store.clone();
        tokio::spawn(async move { store.network_config().await })
    };
    put_with_etcdctl(
        &server,
        &etcd_key::config_key(PREFIX),
        br#"{"Network":"10.50.0.0/16","Backend":{"Type":"host-gw"}}"#,
    );
    let cfg = tokio::time::timeout(Duration::from_secs(15), reader)
        .await
        .expect("config read after it was written")
        .unwrap()
        .unwrap();
    assert_eq!(cfg.ipv4.unwrap().network.to_string(), "10.50.0.0/16");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_survives_an_etcd_restart() {
    let mut server = EtcdServer::start();
    let cfg = contract::none_config();
    let store = Arc::new(contract::store(server.kv().await, Duration::from_secs(600)));
    let own = store.acquire(&cfg, &contract::request(1)).await.unwrap();
    let peer = store.acquire(&cfg, &contract::request(2)).await.unwrap();
    let (mut rx, _task) = contract::start_watch(store.clone(), cfg.clone(), own.subnets);
    contract::wait_for(&mut rx, Duration::from_secs(10), "first peer", |s| {
        contract::has_peer(s, &peer.subnets)
    })
    .await;

    server.stop();
    // While etcd is down the last snapshot stays: no answer is not "no peers".
    assert!(contract::has_peer(
        rx.borrow().as_ref().unwrap(),
        &peer.subnets
    ));
    server.restart();

    let other = contract::store(server.kv().await, Duration::from_secs(600));
    let late = other.acquire(&cfg, &contract::request(3)).await.unwrap();
    contract::wait_for(
        &mut rx,
        Duration::from_secs(30),
        "the peer added after the restart",
        |s| contract::has_peer(s, &late.subnets) && contract::has_peer(s, &peer.subnets),
    )
    .await;
    // Whether the gRPC stream broke or outlived the restart, the peers
    // came from watching on from the last revision seen, never from a new
    // listing (that would show as a relist).
    let snapshot = rx.borrow().clone().unwrap();
    assert_eq!(
        snapshot.watch_restarts.get("relist"),
        None,
        "{:?}",
        snapshot.watch_restarts
    );
}

/// Forwards to etcd, counting listings, and holds back `watch` until
/// released, so a test can make history move and get compacted before the
/// watch resumes.
#[derive(Clone)]
struct HeldWatch {
    inner: EtcdKv,
    released: tokio::sync::watch::Receiver<bool>,
    lists: Arc<std::sync::atomic::AtomicUsize>,
}

impl HeldWatch {
    fn new(inner: EtcdKv, released: tokio::sync::watch::Receiver<bool>) -> Self {
        HeldWatch {
            inner,
            released,
            lists: Arc::default(),
        }
    }

    fn lists(&self) -> usize {
        self.lists.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Kv for HeldWatch {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn get(&self, key: &str) -> Result<Option<KvEntry>, KvError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Listing, KvError> {
        self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.list(prefix).await
    }
    async fn create_if_unchanged(
        &self,
        d: &str,
        r: i64,
        k: &str,
        v: &[u8],
        t: Ttl,
    ) -> Result<bool, KvError> {
        self.inner.create_if_unchanged(d, r, k, v, t).await
    }
    async fn replace(&self, k: &str, m: i64, v: &[u8], t: Ttl) -> Result<bool, KvError> {
        self.inner.replace(k, m, v, t).await
    }
    async fn delete(&self, k: &str, m: i64) -> Result<bool, KvError> {
        self.inner.delete(k, m).await
    }
    async fn watch(&self, prefix: &str, from: i64) -> Result<impl KvWatch, KvError> {
        let mut released = self.released.clone();
        let _ = released.wait_for(|r| *r).await;
        self.inner.watch(prefix, from).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_recovers_from_compaction() {
    let server = EtcdServer::start();
    let cfg = contract::none_config();
    let (release, released) = tokio::sync::watch::channel(false);
    let held = HeldWatch::new(server.kv().await, released);
    let store = Arc::new(contract::store(held, Duration::from_secs(600)));
    let own = store.acquire(&cfg, &contract::request(1)).await.unwrap();
    let (mut rx, _task) = contract::start_watch(store.clone(), cfg.clone(), own.subnets);
    contract::wait_for(&mut rx, Duration::from_secs(10), "first listing", |s| {
        s.own_present
    })
    .await;

    // History moves on and is compacted while the watch is held back.
    let writer = contract::store(server.kv().await, Duration::from_secs(600));
    let late = writer.acquire(&cfg, &contract::request(2)).await.unwrap();
    // A second write: etcd keeps the compaction revision itself, so with
    // one write the held watch (from the revision after the first listing)
    // would start exactly there and see no compaction at all.
    writer.renew(&late).await.unwrap();
    let rev = server.kv().await.list("/").await.unwrap().revision;
    let out = server.etcdctl(&["compact", &rev.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    release.send_replace(true);

    contract::wait_for(
        &mut rx,
        Duration::from_secs(15),
        "the peer written before compaction",
        |s| contract::has_peer(s, &late.subnets),
    )
    .await;
    let snapshot = rx.borrow().clone().unwrap();
    assert_eq!(
        snapshot.watch_restarts.get("relist"),
        Some(&1),
        "{:?}",
        snapshot.watch_restarts
    );
}

/// A client of the TLS server trusting `ca`, with whichever of the client
/// certificate and key are given.
async fn connect_tls(
    server: &EtcdServer,
    ca: &Path,
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
) -> Result<EtcdKv, KvError> {
    EtcdKv::connect(&EtcdOptions {
        endpoints: vec![server.endpoint()],
        cafile: Some(ca.to_owned()),
        certfile: cert.cloned(),
        keyfile: key.cloned(),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path(), "good");
    let wrong = make_tls(dir.path(), "wrong");
    let server = EtcdServer::start_tls(tls.clone());

    let (cert, key) = (Some(&tls.client_cert), Some(&tls.client_key));
    let good = connect_tls(&server, &tls.ca, cert, key).await.unwrap();
    assert!(
        good.get("/x").await.is_ok(),
        "the right CA and client cert must work"
    );

    let bad_ca = connect_tls(&server, &wrong.ca, cert, key).await;
    let refused = match bad_ca {
        Err(e) => e,
        Ok(kv) => kv
            .get("/x")
            .await
            .expect_err("a server cert from another CA must be refused"),
    };
    let _ = refused;

    let no_cert = connect_tls(&server, &tls.ca, None, None).await;
    match no_cert {
        Err(_) => {}
        Ok(kv) => {
            kv.get("/x")
                .await
                .expect_err("a client without certificate must be refused");
        }
    }

    let half = connect_tls(&server, &tls.ca, cert, None).await;
    assert!(
        matches!(&half, Err(KvError::Refused { detail, .. }) if detail.contains("--etcd-keyfile")),
        "a cert without key must be refused clearly"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn username_and_password() {
    let server = EtcdServer::start();
    for args in [
        vec!["user", "add", "root:rootpw"],
        vec!["user", "add", "weft:weftpw"],
        vec!["role", "add", "flannel"],
        vec![
            "role",
            "grant-permission",
            "flannel",
            "--prefix=true",
            "readwrite",
            "/coreos.com/network/",
        ],
        vec!["user", "grant-role", "weft", "flannel"],
        vec!["auth", "enable"],
    ] {
        let out = server.etcdctl(&args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let kv = EtcdKv::connect(&EtcdOptions {
        endpoints: vec![server.endpoint()],
        username: Some("weft".into()),
        password: Some("weftpw".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let store = contract::store(kv, Duration::from_secs(60));
    store
        .acquire(&contract::none_config(), &contract::request(1))
        .await
        .expect("a user with readwrite on the prefix can lease");

    let anonymous = EtcdKv::connect(&server.options()).await.unwrap();
    let err = contract::store(anonymous, Duration::from_secs(60))
        .acquire(&contract::none_config(), &contract::request(2))
        .await
        .expect_err("anonymous access refused");
    assert!(
        matches!(err, weft_store::StoreError::Refused { .. }),
        "{err}"
    );
}

/// A starting agent reads the subnet directory once: what it published
/// before, the lease and the first peer snapshot come from one listing.
/// A lease written after that listing, before the watch starts, is not
/// lost: the watch resumes from the listing's revision and etcd replays it.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_up_lists_the_subnets_once_and_misses_nothing() {
    let server = EtcdServer::start();
    let cfg = contract::none_config();
    let writer = contract::store(server.kv().await, Duration::from_secs(600));
    let before = writer.acquire(&cfg, &contract::request(2)).await.unwrap();

    let (_release, released) = tokio::sync::watch::channel(true);
    let spy = HeldWatch::new(server.kv().await, released);
    let store = Arc::new(contract::store(spy.clone(), Duration::from_secs(600)));
    let req = contract::request(1);
    let previous = store
        .previous_attrs(req.attrs.public_ip, None)
        .await
        .unwrap();
    assert_eq!(previous, None, "this node never held a lease");
    let own = store.acquire(&cfg, &req).await.unwrap();
    let between = writer.acquire(&cfg, &contract::request(3)).await.unwrap();
    let (mut rx, _task) = contract::start_watch(store.clone(), cfg.clone(), own.subnets);
    let first = contract::wait_for(
        &mut rx,
        Duration::from_secs(10),
        "the first snapshot",
        |_| true,
    )
    .await;
    assert!(
        first.own_present,
        "our lease, written after the listing, counts as present"
    );
    assert!(contract::has_peer(&first, &before.subnets));
    contract::wait_for(
        &mut rx,
        Duration::from_secs(10),
        "the lease written after the listing",
        |s| contract::has_peer(s, &between.subnets) && s.own_present,
    )
    .await;
    assert_eq!(
        spy.lists(),
        1,
        "previous_attrs, acquire and the watch share one listing"
    );

    // A later acquisition (our lease vanished) lists afresh.
    store.acquire(&cfg, &req).await.unwrap();
    assert_eq!(spy.lists(), 2);
}
