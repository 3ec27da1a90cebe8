//! The lease-store contract against the local SQLite file, with several
//! handles on one file standing in for several agents on one host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::contract;
use weft_store::LeaseStore;
use weft_store::kv::{Kv, Ttl};
use weft_store::local::LocalKv;

fn open(dir: &tempfile::TempDir) -> LocalKv {
    LocalKv::open(dir.path().join("leases.db")).unwrap()
}

/// Another handle on the file, writing keys without TTL behind the store's
/// back, as another process would.
fn writer(dir: &tempfile::TempDir) -> impl AsyncFn(&str, &[u8]) {
    let kv = open(dir);
    async move |k: &str, v: &[u8]| kv.put(k, v, Ttl::Forever).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_agents_get_distinct_subnets() {
    let dir = tempfile::tempdir().unwrap();
    let kvs = (0..50).map(|_| open(&dir)).collect();
    contract::concurrent_acquisitions_are_distinct(kvs).await;
}

contract::contract_tests! {
    let dir = tempfile::tempdir().unwrap();
    restart_reuses_and_release_frees(open(&dir));
    renewal_and_expiry(open(&dir));
    deleted_lease_is_noticed(open(&dir));
    reservation_is_honoured(open(&dir), writer(&dir));
    exhausted_pool_says_how_to_grow(open(&dir));
    malformed_entries_are_skipped(open(&dir), writer(&dir));
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_file_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = contract::none_config();
    let lease = contract::store(open(&dir), Duration::from_secs(60))
        .acquire(&cfg, &contract::request(1))
        .await
        .unwrap();
    // A new process opening the file sees the lease and reuses it.
    let kv = open(&dir);
    assert!(contract::lease_exists(&kv, &lease).await);
    let again = contract::store(kv, Duration::from_secs(60))
        .acquire(&cfg, &contract::request(1))
        .await
        .unwrap();
    assert_eq!(again.subnets, lease.subnets);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = match LocalKv::open(&path) {
        Err(e) => e,
        Ok(kv) => kv.list("/").await.expect_err("garbage file refused"),
    };
    assert!(err.to_string().contains("lease file"), "{err}");
    assert!(!err.is_retryable(), "{err}");
    let sqlite = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<rusqlite::Error>());
    assert!(
        sqlite.is_some(),
        "SQLite's error is kept as the source: {err:?}"
    );
}

#[test]
fn many_agents_opening_a_new_file_at_once_all_succeed() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        let start = std::sync::Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    LocalKv::open(&path).map(|_| ())
                })
            })
            .collect();
        for t in threads {
            t.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}

/// The file locked by another process for longer than the TTL: nobody can
/// renew meanwhile, and when it is released the leases get a full TTL
/// again instead of being swept (as etcd refreshes leases when it comes
/// back); the peer never leaves the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_survive_the_file_being_locked_longer_than_their_ttl() {
    use std::sync::Arc;
    use weft_store::LeaseStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let cfg = contract::none_config();
    let ttl = Duration::from_secs(3);
    let own_store = Arc::new(contract::store(open(&dir), ttl));
    let own = own_store
        .acquire(&cfg, &contract::request(1))
        .await
        .unwrap();
    let peer_store = contract::store(open(&dir), ttl);
    let peer = peer_store
        .acquire(&cfg, &contract::request(2))
        .await
        .unwrap();
    let (mut rx, _task) = contract::start_watch(own_store.clone(), cfg.clone(), own.subnets);
    contract::wait_for(&mut rx, Duration::from_secs(5), "the peer", |s| {
        contract::has_peer(s, &peer.subnets)
    })
    .await;

    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // The fault itself: locked for 6 s, twice the 3 s TTL.
        std::thread::sleep(Duration::from_secs(6));
        conn.execute_batch("COMMIT").unwrap();
    });
    // While locked, renewals fail (the agent retries); the peer stays.
    let mut watcher = rx.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    let (mut own_lease, mut peer_lease) = (own.clone(), peer.clone());
    while tokio::time::Instant::now() < deadline {
        // Both "agents" keep trying to renew, as weftd does.
        if let Ok(renewed) = own_store.renew(&own_lease).await {
            own_lease = renewed;
        }
        if let Ok(renewed) = peer_store.renew(&peer_lease).await {
            peer_lease = renewed;
        }
        let snap = watcher.borrow_and_update().clone().unwrap();
        assert!(
            contract::has_peer(&snap, &peer.subnets),
            "the peer left during or after the lock"
        );
        assert!(snap.own_present, "our lease was swept after the lock");
        // Paces the renewals and samples, over the 12 s window, as an agent's
        // renew loop would.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    locker.join().unwrap();
}
