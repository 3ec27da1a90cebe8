//! The lease loop against a real store (the local SQLite one, in a
//! temporary directory: no root, no server): what it publishes, and how it
//! takes a lease again when ours vanishes.

use std::sync::Arc;
use std::time::Duration;

use weft_core::lease::{LeaseAttrs, LeaseSubnets};
use weft_core::netconf;
use weft_store::local::LocalKv;
use weft_store::{AcquireRequest, ConfigSource, KvLeaseStore, LeaseStore as _};

use super::super::shutdown::Shutdown;
use super::super::status::StatusHandle;
use super::{Publish, run};
use crate::flags::Flags;

const NET_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
const LIMIT: Duration = Duration::from_secs(20);

fn attrs(n: u8) -> LeaseAttrs {
    let json = format!(
        r#"{{"PublicIP":"192.0.2.{n}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:42:00:00:00:{n:02x}"}}}}"#
    );
    LeaseAttrs::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// A store on the node's files in `dir` (another "node" opens the same).
fn store(dir: &std::path::Path) -> KvLeaseStore<LocalKv> {
    let kv = LocalKv::open(dir.join("leases.db")).unwrap_or_else(|e| panic!("{e}"));
    KvLeaseStore::new(
        kv,
        "/coreos.com/network",
        ConfigSource::File(dir.join("net-conf.json")),
        Duration::from_secs(60),
    )
}

struct Running {
    publish: Arc<Publish>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The loop of node 1 over the store in `dir`.
fn start(dir: &std::path::Path) -> Running {
    std::fs::write(dir.join("net-conf.json"), NET_CONF).unwrap_or_else(|e| panic!("{e}"));
    let flags = Flags {
        subnet_file: dir.join("subnet.env"),
        ..Flags::default()
    };
    let cfg = netconf::parse(NET_CONF).unwrap_or_else(|e| panic!("{e}"));
    let publish = Arc::new(Publish {
        lease: tokio::sync::watch::channel(None).0,
        snapshot: tokio::sync::watch::channel(None).0,
        backend: tokio::sync::watch::channel(None).1,
    });
    let (stop, shutdown): (_, Shutdown) = Shutdown::for_tests();
    let store = store(dir);
    let p = Arc::clone(&publish);
    let task = tokio::spawn(async move {
        run(
            store,
            &flags,
            &cfg,
            attrs(1),
            &StatusHandle::default(),
            &p,
            &shutdown,
        )
        .await
    });
    Running {
        publish,
        stop,
        task,
    }
}

async fn wait_for<T: Clone>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    what: &str,
    cond: impl FnMut(&T) -> bool,
) -> T {
    match tokio::time::timeout(LIMIT, rx.wait_for(cond)).await {
        Ok(Ok(v)) => v.clone(),
        _ => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

/// The lease first, then every change of the peers as a snapshot; a
/// shutdown ends the loop cleanly.
#[tokio::test]
async fn the_lease_then_each_peer_snapshot_is_published() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let node1 = start(dir.path());
    let mut lease_rx = node1.publish.lease.subscribe();
    let lease = wait_for(&mut lease_rx, "our lease", |l| l.is_some()).await;
    let own = lease.map(|l| l.subnets).unwrap_or_default();
    let mut snap_rx = node1.publish.snapshot.subscribe();
    wait_for(&mut snap_rx, "a first snapshot", |s| s.is_some()).await;

    // Node 2 joins through the same store.
    let cfg = netconf::parse(NET_CONF).unwrap_or_else(|e| panic!("{e}"));
    let node2 = store(dir.path())
        .acquire(
            &cfg,
            &AcquireRequest {
                attrs: attrs(2),
                previous: LeaseSubnets::default(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(node2.subnets, own, "two nodes got one subnet");
    let snapshot = wait_for(&mut snap_rx, "node2 among the peers", |s| {
        s.as_ref().is_some_and(|s| s.peers.accepted.len() == 1)
    })
    .await;
    let peer = snapshot.map(|s| s.peers.accepted[0].1.subnets);
    assert_eq!(peer, Some(node2.subnets));

    let _ = node1.stop.send(true);
    let ended = tokio::time::timeout(LIMIT, node1.task).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the loop did not end cleanly"
    );
}

/// Our lease deleted from the store (an operator, or expiry while the
/// node was cut off): the loop takes a lease again — the same subnet, as it
/// is free — and publishes it.
#[tokio::test]
async fn a_vanished_lease_is_taken_again_with_the_same_subnet() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let node1 = start(dir.path());
    let mut lease_rx = node1.publish.lease.subscribe();
    let first = wait_for(&mut lease_rx, "our lease", |l| l.is_some()).await;
    let own = first.map(|l| l.subnets).unwrap_or_default();
    lease_rx.mark_unchanged();

    let kv = store(dir.path());
    let key = weft_core::etcd_key::lease_key("/coreos.com/network", &own);
    use weft_store::kv::Kv as _;
    let entry = kv.kv().get(&key).await.unwrap_or_else(|e| panic!("{e}"));
    let rev = entry
        .map(|e| e.mod_rev)
        .unwrap_or_else(|| panic!("our lease is not stored"));
    assert!(
        kv.kv()
            .delete(&key, rev)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );

    match tokio::time::timeout(LIMIT, lease_rx.changed()).await {
        Ok(Ok(())) => {}
        _ => panic!("the lease was not taken again within {LIMIT:?}"),
    }
    let again = lease_rx.borrow().clone().map(|l| l.subnets);
    assert_eq!(again, Some(own));
    let stored = kv.kv().get(&key).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stored.is_some(),
        "the lease is published but not in the store"
    );
    let _ = node1.stop.send(true);
}

/// What the dataplane asks to publish lands in the lease's attributes:
/// a new public address after a renumbering, new BackendData after a key
/// rotation; `None` leaves a field as it is.
#[test]
fn published_changes_reach_the_lease_attributes() {
    let mut a = attrs(1);
    let backend = a.backend_data.clone();
    super::apply_published(
        &mut a,
        super::Published {
            public_ip: Some("192.0.2.101".parse().unwrap_or_else(|_| unreachable!())),
            ..Default::default()
        },
    );
    assert_eq!(
        a.public_ip.map(|ip| ip.to_string()).as_deref(),
        Some("192.0.2.101")
    );
    assert_eq!(a.backend_data, backend);
}
