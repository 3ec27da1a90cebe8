//! The Kubernetes store holding this node's lease, against the in-repo API
//! server: what it writes, when it waits, what it refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_kube;

use std::time::Duration;

use common_kube::{Cluster, acquire, count_requests, golden_node, request_for, vxlan};
use serde_json::Value;
use tokio::task::JoinHandle;
use weft_core::lease::Lease;
use weft_kube_testserver::NodeSpec;
use weft_store::kube::{KubeLeaseStore, KubeOptions};
use weft_store::{LeaseStore, StoreError};

const MAC: &str = "ee:a4:86:c3:7f:56";

fn flannel_annotations(node: &Value) -> serde_json::Map<String, Value> {
    node["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("flannel.alpha.coreos.com/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// node1's annotation `flannel.alpha.coreos.com/{name}` as the server holds
/// it now (null when absent).
fn flannel_annotation(c: &Cluster, name: &str) -> Value {
    c.server.node("node1").unwrap()["metadata"]["annotations"]
        [format!("flannel.alpha.coreos.com/{name}")]
    .clone()
}

/// The node's condition of type `kind`, if set.
fn condition(node: &Value, kind: &str) -> Option<Value> {
    node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

/// How many PATCHes node1's status has had.
fn status_patches(c: &Cluster) -> usize {
    count_requests(&c.server, "PATCH", "/api/v1/nodes/node1/status")
}

/// Starts an acquire on a task of its own, for tests that watch it wait.
fn spawn_acquire(store: KubeLeaseStore, ip: &'static str) -> JoinHandle<Result<Lease, StoreError>> {
    tokio::spawn(async move { acquire(&store, ip, MAC).await })
}

/// The lease a waiting acquire ends with, which must come within 10 s.
async fn acquired(acquiring: JoinHandle<Result<Lease, StoreError>>) -> Lease {
    tokio::time::timeout(Duration::from_secs(10), acquiring)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn startup_writes_flannels_annotations_and_condition() {
    let c = Cluster::start().await;
    // The golden node as the kubelet left it, before flannel ran.
    let mut fixture = golden_node();
    let golden_annotations = fixture["metadata"]["annotations"].clone();
    fixture["metadata"]["annotations"] = serde_json::json!({});
    let conditions = fixture["status"]["conditions"].as_array_mut().unwrap();
    conditions.retain(|c| c["type"] == "Ready");
    c.server.add_node_object(fixture).unwrap();

    let store = c.store("node1").await;
    assert_eq!(store.kind(), "kube");
    let lease = acquire(&store, "192.0.2.1", MAC).await.unwrap();
    assert_eq!(lease.subnets.v4.unwrap().to_string(), "10.244.1.0/24");
    assert_eq!(lease.expiration, None, "kube leases never expire");

    let node = c.server.node("node1").unwrap();
    // Byte for byte what flannel wrote on a real cluster.
    assert_eq!(
        Value::Object(flannel_annotations(&node)),
        golden_annotations
    );
    let cond = condition(&node, "NetworkUnavailable").expect("the condition is set");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "FlannelIsUp");
    assert_eq!(cond["message"], "Flannel is running on this node");
    assert!(cond["lastTransitionTime"].as_str().unwrap().ends_with('Z'));
    // The Ready condition is kept: conditions merge by type.
    assert!(condition(&node, "Ready").is_some());

    // Both writes went to nodes/status as strategic merge patches.
    let patches: Vec<_> = c
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
    for p in &patches {
        assert!(p.uri.starts_with("/api/v1/nodes/node1/status"), "{}", p.uri);
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/strategic-merge-patch+json")
        );
    }
}

#[tokio::test]
async fn the_condition_is_left_alone_when_disabled() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    let opts = KubeOptions {
        set_node_network_unavailable: false,
        ..c.options("node1")
    };
    let store = KubeLeaseStore::connect(opts).await.unwrap();
    acquire(&store, "192.0.2.1", MAC).await.unwrap();
    let node = c.server.node("node1").unwrap();
    assert!(condition(&node, "NetworkUnavailable").is_none());
}

#[tokio::test]
async fn waits_for_a_pod_cidr_then_proceeds() {
    let c = Cluster::start().await;
    c.server
        .add_node(
            NodeSpec::new("node1")
                .internal_ip("192.0.2.1".parse().unwrap())
                .without_pod_cidr(),
        )
        .unwrap();
    let acquiring = spawn_acquire(c.store("node1").await, "192.0.2.1");
    // Negative window: with no podCIDR, acquire must still be waiting (and
    // polling, every 100 ms) after half a second.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !acquiring.is_finished(),
        "acquire must wait while no podCIDR is assigned"
    );
    assert!(
        count_requests(&c.server, "GET", "/api/v1/nodes/node1") >= 2,
        "it keeps looking"
    );
    // The controller-manager catches up.
    c.server.assign_pod_cidr("node1").unwrap();
    let lease = acquired(acquiring).await;
    assert_eq!(lease.subnets.v4.unwrap().to_string(), c.pod_cidr("node1"));
}

#[tokio::test]
async fn waits_for_the_node_to_register() {
    let c = Cluster::start().await;
    let acquiring = spawn_acquire(c.store("late").await, "192.0.2.5");
    // Negative window: acquire must still be waiting while the node is not
    // registered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!acquiring.is_finished());
    c.add_node("late", "192.0.2.5");
    let lease = acquired(acquiring).await;
    assert!(lease.subnets.v4.is_some());
}

#[tokio::test]
async fn a_pod_cidr_outside_the_network_is_refused_with_flannels_message() {
    let c = Cluster::start().await;
    c.server
        .add_node(NodeSpec::new("node1").pod_cidrs(&["10.99.1.0/24"]))
        .unwrap();
    let store = c.store("node1").await;
    let err = acquire(&store, "192.0.2.1", MAC).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains(
            r#"subnet "10.244.0.0/16" specified in the flannel net config doesn't contain "10.99.1.0/24" PodCIDR of the "node1" node"#
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_patch_conflict_is_retried() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    // The kubelet writes the node just before each of our next two PATCHes.
    c.server.concurrent_writes_before_patch("node1", 2);
    let store = c.store("node1").await;
    acquire(&store, "192.0.2.1", MAC).await.unwrap();
    assert_eq!(flannel_annotation(&c, "public-ip"), "192.0.2.1");
    // Two conflicts, one success, then the condition.
    assert_eq!(status_patches(&c), 4);
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    c.server.fail_next("patch", "nodes/status", 503, 2);
    c.server.fail_next("get", "nodes", 500, 1);
    let store = c.store("node1").await;
    acquire(&store, "192.0.2.1", MAC).await.unwrap();
    assert_eq!(flannel_annotation(&c, "kube-subnet-manager"), "true");
}

#[tokio::test]
async fn missing_rbac_is_refused_with_the_fix() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    c.server.forbid("patch", "nodes/status");
    let store = c.store("node1").await;
    let err = acquire(&store, "192.0.2.1", MAC).await.unwrap_err();
    let msg = err.to_string();
    assert!(!err.is_retryable(), "{msg}");
    assert!(
        msg.contains(r#"cannot patch resource "nodes/status""#),
        "{msg}"
    );
    assert!(msg.contains("nodes/status patch"), "{msg}");
}

#[tokio::test]
async fn a_restart_reuses_the_published_vtep_mac() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    let store = c.store("node1").await;
    assert_eq!(store.previous_attrs(None, None).await.unwrap(), None);
    acquire(&store, "192.0.2.1", MAC).await.unwrap();
    drop(store);

    // A new agent process: it finds what it published before.
    let store = c.store("node1").await;
    let cfg = store.network_config().await.unwrap();
    let previous = store.previous_attrs(None, None).await.unwrap().unwrap();
    assert_eq!(previous, vxlan("192.0.2.1", MAC));
    let patches_before = status_patches(&c);
    store.acquire(&cfg, &request_for(previous)).await.unwrap();
    // Same annotations: nothing to write but the condition.
    assert_eq!(status_patches(&c), patches_before + 1);
    assert_eq!(
        flannel_annotation(&c, "backend-data"),
        format!(r#"{{"VNI":1,"VtepMAC":"{MAC}"}}"#)
    );
}

#[tokio::test]
async fn node_public_ip_and_overwrite_are_honoured() {
    let c = Cluster::start().await;
    c.server
        .add_node(
            NodeSpec::new("node1")
                .annotation("flannel.alpha.coreos.com/node-public-ip", "198.51.100.4")
                .annotation(
                    "flannel.alpha.coreos.com/public-ip-overwrite",
                    "203.0.113.9",
                ),
        )
        .unwrap();
    let store = c.store("node1").await;
    let (v4, v6) = store.stored_public_ips().await.unwrap();
    assert_eq!(v4, Some("198.51.100.4".parse().unwrap()));
    assert_eq!(v6, None);
    let lease = acquire(&store, "198.51.100.4", MAC).await.unwrap();
    // The lease keeps the detected address (the local dataplane uses it)...
    assert_eq!(lease.attrs.public_ip, Some("198.51.100.4".parse().unwrap()));
    // ...while peers are told the overwrite (NAT).
    assert_eq!(flannel_annotation(&c, "public-ip"), "203.0.113.9");
}

#[tokio::test]
async fn renew_puts_removed_annotations_back_and_release_removes_them() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    let store = c.store("node1").await;
    let lease = acquire(&store, "192.0.2.1", MAC).await.unwrap();

    // An operator wipes flannel's annotations.
    c.server
        .annotate(
            "node1",
            &[
                ("flannel.alpha.coreos.com/kube-subnet-manager", None),
                ("flannel.alpha.coreos.com/backend-data", None),
            ],
        )
        .unwrap();
    let renewed = store.renew(&lease).await.unwrap();
    assert_eq!(renewed, lease);
    let node = c.server.node("node1").unwrap();
    assert_eq!(flannel_annotations(&node).len(), 4);

    c.server
        .annotate(
            "node1",
            &[(
                "flannel.alpha.coreos.com/public-ip-overwrite",
                Some("203.0.113.1"),
            )],
        )
        .unwrap();
    store.release(&lease).await.unwrap();
    let node = c.server.node("node1").unwrap();
    let left: Vec<String> = flannel_annotations(&node).keys().cloned().collect();
    assert_eq!(
        left,
        vec!["flannel.alpha.coreos.com/public-ip-overwrite".to_owned()],
        "the operator's override stays"
    );

    // A deleted node: the lease is gone, and the agent must take it again.
    c.server.delete_node("node1").unwrap();
    assert!(matches!(
        store.renew(&lease).await,
        Err(StoreError::LeaseGone { .. })
    ));
}

#[tokio::test]
async fn dual_stack_publishes_both_families() {
    let c = Cluster::with(weft_kube_testserver::ServerOptions {
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        ],
        ..common_kube::fast_options()
    })
    .await;
    std::fs::write(
        &c.netconf,
        r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}"#,
    )
    .unwrap();
    c.add_node("node1", "192.0.2.1");
    let store = c.store("node1").await;
    let cfg = store.network_config().await.unwrap();
    let mut attrs = vxlan("192.0.2.1", MAC);
    attrs.public_ipv6 = Some("2001:db8::1".parse().unwrap());
    attrs.backend_v6_data = Some(
        weft_core::lease::RawJson::parse(r#"{"VNI":1,"VtepMAC":"2e:51:00:00:00:01"}"#).unwrap(),
    );
    let lease = store.acquire(&cfg, &request_for(attrs)).await.unwrap();
    assert_eq!(lease.subnets.v4.unwrap().to_string(), "10.244.0.0/24");
    assert_eq!(lease.subnets.v6.unwrap().to_string(), "fd00:10:244::/64");
    assert_eq!(flannel_annotation(&c, "public-ipv6"), "2001:db8::1");
    assert_eq!(
        flannel_annotation(&c, "backend-v6-data"),
        r#"{"VNI":1,"VtepMAC":"2e:51:00:00:00:01"}"#
    );
    assert_eq!(flannel_annotation(&c, "public-ip"), "192.0.2.1");
}
