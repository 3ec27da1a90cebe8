//! The contract every KV-backed lease store honours, run against etcd and
//! the local file alike. Each function is one behaviour a user relies on.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weft_core::etcd_key;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::{self, NetConfig};
use weft_store::kv::Kv;
use weft_store::{
    AcquireRequest, ConfigSource, KvLeaseStore, LeaseStore, PeerSnapshot, StoreError,
};

pub const PREFIX: &str = "/coreos.com/network";

/// One `#[tokio::test]` per contract behaviour, so that each store's file
/// gives its set-up once and lists the behaviours instead of wrapping each
/// by hand. `let x = setup;` starts every test (a fresh datastore); each
/// `behaviour(args) [as test_name];` then calls `contract::behaviour(args)`
/// in a test named after the behaviour, or `test_name`.
macro_rules! contract_tests {
    (
        let $fixture:ident = $setup:expr;
        $($contract:ident($($arg:expr),*) $(as $test:ident)?;)+
    ) => {
        $(
            $crate::common::contract::contract_tests!(
                @test [$fixture = $setup] $contract($($arg),*) $($test)?
            );
        )+
    };
    (@test [$fixture:ident = $setup:expr] $contract:ident($($arg:expr),*) $test:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $test() {
            let $fixture = $setup;
            $crate::common::contract::$contract($($arg),*).await;
        }
    };
    (@test [$fixture:ident = $setup:expr] $contract:ident($($arg:expr),*)) => {
        $crate::common::contract::contract_tests!(
            @test [$fixture = $setup] $contract($($arg),*) $contract
        );
    };
}
pub(crate) use contract_tests;

pub fn config(json: &str) -> NetConfig {
    netconf::parse(json).expect("test config is valid")
}

pub fn none_config() -> NetConfig {
    config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"none"}}"#)
}

pub fn store<K: Kv>(kv: K, ttl: Duration) -> KvLeaseStore<K> {
    KvLeaseStore::new(kv, PREFIX, ConfigSource::StoreKey, ttl)
}

pub fn request(last_octet: u8) -> AcquireRequest {
    AcquireRequest {
        attrs: LeaseAttrs {
            public_ip: Some(Ipv4Addr::new(192, 0, 2, last_octet)),
            ..Default::default()
        },
        previous: LeaseSubnets::default(),
    }
}

type Rx = watch::Receiver<Option<Arc<PeerSnapshot>>>;

/// Starts a peer watch for `own` and returns its receiver.
pub fn start_watch<K: Kv>(
    store: Arc<KvLeaseStore<K>>,
    cfg: NetConfig,
    own: LeaseSubnets,
) -> (Rx, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move { store.watch_peers(cfg, own, tx).await });
    (rx, task)
}

/// Waits until a snapshot satisfies `pred`, failing after `limit`.
pub async fn wait_for(
    rx: &mut Rx,
    limit: Duration,
    what: &str,
    pred: impl Fn(&PeerSnapshot) -> bool,
) -> Arc<PeerSnapshot> {
    let result = tokio::time::timeout(limit, async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone()
                && pred(&s)
            {
                return s;
            }
            rx.changed().await.expect("watch ended");
        }
    })
    .await;
    match result {
        Ok(s) => s,
        Err(_) => panic!(
            "timed out after {limit:?} waiting for {what}; last: {:?}",
            rx.borrow()
        ),
    }
}

pub fn has_peer(s: &PeerSnapshot, subnets: &LeaseSubnets) -> bool {
    s.peers.accepted.iter().any(|(_, l)| l.subnets == *subnets)
}

/// 50 agents, each with its own connection, acquiring at the same instant:
/// 50 distinct subnets, none fails.
pub async fn concurrent_acquisitions_are_distinct<K: Kv>(kvs: Vec<K>) {
    let cfg = none_config();
    let n = kvs.len();
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for (i, kv) in kvs.into_iter().enumerate() {
        let (cfg, start) = (cfg.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            let store = store(kv, Duration::from_secs(60));
            start.wait().await;
            store.acquire(&cfg, &request(i as u8 + 1)).await
        }));
    }
    let mut subnets = Vec::new();
    for t in tasks {
        let lease = t.await.expect("task").expect("every agent gets a lease");
        assert!(
            cfg.ipv4
                .as_ref()
                .unwrap()
                .holds_subnet(lease.subnets.get(weft_core::Family::V4).unwrap())
        );
        subnets.push(lease.subnets);
    }
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), n, "two agents got the same subnet");
}

/// A restarted agent gets its subnet back; a node whose IP changed gets the
/// subnet named in its old subnet.env; a released subnet is free again.
pub async fn restart_reuses_and_release_frees<K: Kv + Clone>(kv: K) {
    let cfg = none_config();
    let first = store(kv.clone(), Duration::from_secs(60));
    let lease = first.acquire(&cfg, &request(1)).await.unwrap();
    let again = store(kv.clone(), Duration::from_secs(60))
        .acquire(&cfg, &request(1))
        .await
        .unwrap();
    assert_eq!(
        again.subnets, lease.subnets,
        "same public IP must get the same subnet"
    );

    first.release(&lease).await.unwrap();
    let key = etcd_key::lease_key(PREFIX, &lease.subnets);
    assert!(
        kv.get(&key).await.unwrap().is_none(),
        "released lease still stored"
    );

    let mut moved = request(9);
    moved.previous = lease.subnets;
    let back = first.acquire(&cfg, &moved).await.unwrap();
    assert_eq!(
        back.subnets, lease.subnets,
        "the previous subnet.env subnet must be reused"
    );
}

/// Renewal keeps a lease alive past its TTL; a node that stops renewing
/// loses its lease and disappears from the others' snapshots.
pub async fn renewal_and_expiry<K: Kv + Clone>(kv: K) {
    let ttl = Duration::from_secs(3);
    let cfg = none_config();
    let live = Arc::new(store(kv.clone(), ttl));
    let dead = store(kv.clone(), ttl);
    let mut lease = live.acquire(&cfg, &request(1)).await.unwrap();
    let dead_lease = dead.acquire(&cfg, &request(2)).await.unwrap();

    let (mut rx, _task) = start_watch(live.clone(), cfg.clone(), lease.subnets);
    wait_for(
        &mut rx,
        Duration::from_secs(10),
        "the dead node to appear",
        |s| has_peer(s, &dead_lease.subnets),
    )
    .await;

    // Renew every second for three TTLs.
    let deadline = tokio::time::Instant::now() + ttl * 3;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        lease = live.renew(&lease).await.expect("renewal keeps the lease");
    }
    let key = etcd_key::lease_key(PREFIX, &lease.subnets);
    assert!(
        kv.get(&key).await.unwrap().is_some(),
        "renewed lease vanished"
    );

    wait_for(&mut rx, ttl * 4, "the dead node's lease to expire", |s| {
        !has_peer(s, &dead_lease.subnets) && s.own_present
    })
    .await;
}

/// An operator deleting our lease is noticed: renewal reports it gone and
/// the snapshot says our lease is missing.
pub async fn deleted_lease_is_noticed<K: Kv + Clone>(kv: K) {
    let cfg = none_config();
    let s = Arc::new(store(kv.clone(), Duration::from_secs(60)));
    let lease = s.acquire(&cfg, &request(1)).await.unwrap();
    let (mut rx, _task) = start_watch(s.clone(), cfg, lease.subnets);
    wait_for(&mut rx, Duration::from_secs(10), "own lease present", |x| {
        x.own_present
    })
    .await;
    let key = etcd_key::lease_key(PREFIX, &lease.subnets);
    let entry = kv.get(&key).await.unwrap().unwrap();
    assert!(kv.delete(&key, entry.mod_rev).await.unwrap());
    wait_for(&mut rx, Duration::from_secs(10), "own lease missing", |x| {
        !x.own_present
    })
    .await;
    match s.renew(&lease).await {
        Err(StoreError::LeaseGone { key: k }) => assert_eq!(k, key),
        other => panic!("expected LeaseGone, got {other:?}"),
    }
}

/// A reservation (a key without TTL) is taken by the node with that public
/// IP and stays without TTL across renewals.
pub async fn reservation_is_honoured<K: Kv + Clone>(kv: K, put_forever: impl AsyncFn(&str, &[u8])) {
    let cfg = none_config();
    let reserved = LeaseSubnets {
        v4: Some("10.244.77.0/24".parse().unwrap()),
        v6: None,
    };
    let key = etcd_key::lease_key(PREFIX, &reserved);
    put_forever(&key, br#"{"PublicIP":"192.0.2.7","PublicIPv6":null}"#).await;
    let s = store(kv.clone(), Duration::from_secs(3));
    let lease = s.acquire(&cfg, &request(7)).await.unwrap();
    assert_eq!(lease.subnets, reserved);
    assert_eq!(lease.expiration, None);
    let lease = s.renew(&lease).await.unwrap();
    assert_eq!(lease.expiration, None);
    let entry = kv.get(&key).await.unwrap().unwrap();
    assert!(!entry.expires, "a reservation must keep living without TTL");
    // Another node never gets it.
    let other = s.acquire(&cfg, &request(8)).await.unwrap();
    assert_ne!(other.subnets, reserved);
}

/// A pool with no room left gives an error that says how to grow it.
pub async fn exhausted_pool_says_how_to_grow<K: Kv + Clone>(kv: K) {
    // A /28 cut into /30s: 4 subnets, the first skipped → 3 leasable.
    let cfg = config(r#"{"Network":"10.9.0.0/28","SubnetLen":30,"Backend":{"Type":"none"}}"#);
    let s = store(kv, Duration::from_secs(60));
    for i in 1..=3 {
        s.acquire(&cfg, &request(i)).await.expect("room for three");
    }
    let err = s
        .acquire(&cfg, &request(4))
        .await
        .expect_err("pool is full");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::PoolExhausted { .. }), "{msg}");
    assert!(
        msg.contains("10.9.0.0/28") && msg.contains("Grow the pool"),
        "{msg}"
    );
}

/// Hostile entries are left out of snapshots, each counted once, and never
/// hide the good ones.
pub async fn malformed_entries_are_skipped<K: Kv + Clone>(kv: K, put: impl AsyncFn(&str, &[u8])) {
    let cfg = none_config();
    let s = Arc::new(store(kv.clone(), Duration::from_secs(60)));
    let own = s.acquire(&cfg, &request(1)).await.unwrap();
    let good = s.acquire(&cfg, &request(2)).await.unwrap();
    let dir = etcd_key::subnets_dir(PREFIX);
    let bad: Vec<(String, Vec<u8>, &str)> = vec![
        (
            format!("{dir}garbage"),
            br#"{"PublicIP":"192.0.2.50"}"#.to_vec(),
            "bad_key",
        ),
        (
            format!("{dir}10.244.200.0-24"),
            b"{not json".to_vec(),
            "bad_value",
        ),
        (
            format!("{dir}10.99.0.0-24"),
            br#"{"PublicIP":"192.0.2.51"}"#.to_vec(),
            "outside_network",
        ),
        (
            format!("{dir}10.244.201.0-24"),
            br#"{"PublicIP":"10.244.3.3"}"#.to_vec(),
            "public_ip_in_pod_network",
        ),
        (
            format!("{dir}10.244.202.0-24"),
            vec![b' '; 5000],
            "bad_value",
        ),
        (
            format!("{dir}{}", etcd_key::subnet_key(&good.subnets)).replace("-24", "-24&fd00::-64"),
            br#"{"PublicIP":"192.0.2.52"}"#.to_vec(),
            "overlap",
        ),
    ];
    for (key, value, _) in &bad {
        put(key, value).await;
    }
    let (mut rx, _task) = start_watch(s.clone(), cfg, own.subnets);
    let snap = wait_for(
        &mut rx,
        Duration::from_secs(10),
        "all entries screened",
        |x| x.peers.rejected.len() == bad.len(),
    )
    .await;
    assert_eq!(
        snap.peers.accepted.len(),
        1,
        "only the good peer: {:?}",
        snap.peers.accepted
    );
    assert!(has_peer(&snap, &good.subnets));
    for (key, _, kind) in &bad {
        let r = snap.peers.rejected.iter().find(|r| &r.id == key);
        let r = r.unwrap_or_else(|| panic!("{key} not rejected: {:?}", snap.peers.rejected));
        assert_eq!(r.reason.kind(), *kind, "{key}: {}", r.reason);
    }
    let total: u64 = snap.skipped_total.values().sum();
    assert_eq!(
        total,
        bad.len() as u64,
        "each entry counted once: {:?}",
        snap.skipped_total
    );
}

/// Waits until a lease for `subnets` exists in the store.
pub async fn lease_exists<K: Kv>(kv: &K, lease: &Lease) -> bool {
    kv.get(&etcd_key::lease_key(PREFIX, &lease.subnets))
        .await
        .map(|e| e.is_some())
        .unwrap_or(false)
}
