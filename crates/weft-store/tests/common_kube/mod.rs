//! Shared helpers for the Kubernetes store tests: a test API server with a
//! net-conf.json beside it, stores pointed at it, and snapshot waits.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets, RawJson};
use weft_core::netconf::NetConfig;
use weft_kube_testserver::{NodeSpec, ServerOptions, TestServer};
use weft_store::PeerSnapshot;
use weft_store::kube::{KubeLeaseStore, KubeOptions, NodeIdentity};
use weft_store::{AcquireRequest, LeaseStore, SnapshotSender, StoreError};

pub const NETCONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

/// A Node as flannel leaves it (captured from a real run).
pub fn golden_node() -> Value {
    serde_json::from_str(include_str!("golden/kube-node-after-flannel.json")).unwrap()
}

pub fn vxlan(ip: &str, mac: &str) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Some(ip.parse().unwrap()),
        backend_type: "vxlan".into(),
        backend_data: Some(RawJson::parse(&format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#)).unwrap()),
        ..Default::default()
    }
}

/// A request to publish `attrs`, with no earlier lease to keep.
pub fn request_for(attrs: LeaseAttrs) -> AcquireRequest {
    AcquireRequest {
        attrs,
        previous: Default::default(),
    }
}

/// Reads the net config and asks for a vxlan lease: the acquire most tests
/// make, spelled once.
pub async fn acquire(store: &KubeLeaseStore, ip: &str, mac: &str) -> Result<Lease, StoreError> {
    let cfg = store.network_config().await.unwrap();
    store.acquire(&cfg, &request_for(vxlan(ip, mac))).await
}

/// Registers our own node1, takes its lease and starts the peer watch: how
/// every watch test begins.
pub async fn node1(c: &Cluster) -> (Arc<KubeLeaseStore>, Lease, SnapshotRx) {
    c.add_node("node1", "192.0.2.1");
    let store = Arc::new(c.store("node1").await);
    let lease = acquire(&store, "192.0.2.1", "ee:a4:86:c3:7f:01")
        .await
        .unwrap();
    let cfg = store.network_config().await.unwrap();
    let (rx, _task) = watch(Arc::clone(&store), cfg, lease.subnets);
    (store, lease, rx)
}

pub struct Cluster {
    pub server: TestServer,
    pub dir: tempfile::TempDir,
    pub netconf: PathBuf,
}

/// Test-speed server options: bookmarks every second.
pub fn fast_options() -> ServerOptions {
    ServerOptions {
        bookmark_interval: Duration::from_secs(1),
        ..ServerOptions::default()
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::with(fast_options()).await
    }

    pub async fn with(opts: ServerOptions) -> Cluster {
        let server = TestServer::start(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let netconf = dir.path().join("net-conf.json");
        std::fs::write(&netconf, NETCONF).unwrap();
        Cluster {
            server,
            dir,
            netconf,
        }
    }

    pub fn options(&self, node: &str) -> KubeOptions {
        KubeOptions {
            api_url: Some(self.server.url()),
            net_config_path: self.netconf.clone(),
            poll_interval: Duration::from_millis(100),
            ..KubeOptions::new(NodeIdentity::Name(node.to_owned()))
        }
    }

    pub async fn store(&self, node: &str) -> KubeLeaseStore {
        KubeLeaseStore::connect(self.options(node)).await.unwrap()
    }

    pub fn add_node(&self, name: &str, ip: &str) -> Value {
        self.server
            .add_node(NodeSpec::new(name).internal_ip(ip.parse().unwrap()))
            .unwrap()
    }

    /// A peer already running flannel (or weft): annotated as flannel does.
    pub fn add_flannel_node(&self, name: &str, ip: &str, mac: &str) -> Value {
        self.add_node(name, ip);
        let data = format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#);
        self.server
            .annotate(
                name,
                &[
                    ("flannel.alpha.coreos.com/backend-data", Some(&data)),
                    ("flannel.alpha.coreos.com/backend-type", Some("vxlan")),
                    ("flannel.alpha.coreos.com/kube-subnet-manager", Some("true")),
                    ("flannel.alpha.coreos.com/public-ip", Some(ip)),
                ],
            )
            .unwrap()
    }

    pub fn pod_cidr(&self, name: &str) -> String {
        self.server.node(name).unwrap()["spec"]["podCIDR"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The peers' names in a snapshot, sorted.
pub fn peer_names(s: &PeerSnapshot) -> Vec<String> {
    let mut v: Vec<String> = s.peers.accepted.iter().map(|(k, _)| k.clone()).collect();
    v.sort();
    v
}

pub type SnapshotRx = watch::Receiver<Option<Arc<PeerSnapshot>>>;

/// Starts `watch_peers` on its own task.
pub fn watch(
    store: Arc<KubeLeaseStore>,
    cfg: NetConfig,
    own: LeaseSubnets,
) -> (SnapshotRx, tokio::task::JoinHandle<()>) {
    let (tx, rx): (SnapshotSender, _) = watch::channel(None);
    let task = tokio::spawn(async move { store.watch_peers(cfg, own, tx).await });
    (rx, task)
}

/// Waits (up to 20 s) until a snapshot satisfies `pred`.
pub async fn wait_for(
    rx: &mut SnapshotRx,
    what: &str,
    pred: impl Fn(&PeerSnapshot) -> bool,
) -> Arc<PeerSnapshot> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = rx.borrow_and_update().clone()
            && pred(&s)
        {
            return s;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the watch stopped while waiting for {what}"),
            Err(_) => panic!(
                "timed out waiting for {what}; last snapshot: {:?}",
                rx.borrow().clone()
            ),
        }
    }
}

/// How many requests matching `method` and a path prefix the server saw.
pub fn count_requests(server: &TestServer, method: &str, uri_prefix: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == method && r.uri.starts_with(uri_prefix))
        .count()
}
