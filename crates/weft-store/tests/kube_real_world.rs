//! What a real cluster hands the Kubernetes store: a Node exactly as
//! `kubectl get node -o json` prints it on a kubeadm cluster running
//! flannel, and (absent a kubeconfig) the in-cluster service account.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_kube;

use common_kube::{Cluster, node1, peer_names, vxlan, wait_for};
use serde_json::Value;
use weft_store::StoreError;
use weft_store::kube::{KubeLeaseStore, KubeOptions, NodeIdentity};

/// A kubeadm worker's Node as `kubectl get node -o json` prints it, with
/// the annotations flannel (vxlan) writes. Written by hand from the real
/// format (no cluster runs here): metadata with uid, resourceVersion,
/// creationTimestamp and kubeadm's labels and annotations, spec.podCIDR(s),
/// status with addresses, conditions (NetworkUnavailable as flannel sets
/// it), capacity/allocatable, daemonEndpoints, images and nodeInfo.
fn kubectl_node() -> Value {
    serde_json::from_str(include_str!(
        "fixtures/kubectl/worker-node-flannel-vxlan.json"
    ))
    .unwrap()
}

#[tokio::test]
async fn a_kubectl_node_becomes_the_peer_lease_flannel_announced() {
    let c = Cluster::start().await;
    c.server.add_node_object(kubectl_node()).unwrap();
    // Our own node, registered after it: its podCIDR is allocated around
    // the fixture's.
    let (_store, lease, mut rx) = node1(&c).await;
    assert_ne!(lease.subnets.v4.unwrap().to_string(), "10.244.1.0/24");

    let s = wait_for(&mut rx, "the kubectl node as a peer", |s| {
        peer_names(s) == ["k8s-worker-1"]
    })
    .await;
    assert!(
        s.peers.rejected.is_empty(),
        "skipped: {:?}",
        s.peers.rejected
    );
    let (_, peer) = &s.peers.accepted[0];
    assert_eq!(peer.subnets.v4.unwrap().to_string(), "10.244.1.0/24");
    assert_eq!(peer.subnets.v6, None);
    assert_eq!(peer.attrs.public_ip, Some("192.168.56.11".parse().unwrap()));
    assert_eq!(peer.attrs.backend_type, "vxlan");
    assert_eq!(peer.attrs, vxlan("192.168.56.11", "5e:3b:9a:41:c2:7d"));
    assert_eq!(peer.expiration, None, "kube leases never expire");
}

#[tokio::test]
async fn without_kubeconfig_or_service_account_the_error_names_both() {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        eprintln!("skipping: running inside a pod, the in-cluster config exists");
        return;
    }
    // No --kubeconfig-file, no --kube-api-url: the in-cluster service
    // account is the last resort, and it is not there.
    let opts = KubeOptions::new(NodeIdentity::Name("node1".to_owned()));
    let err = match KubeLeaseStore::connect(opts).await {
        Ok(_) => panic!("connected without any way to reach an API server"),
        Err(e) => e,
    };
    let StoreError::Refused {
        store,
        detail,
        source,
    } = &err
    else {
        panic!("not a permanent refusal: {err:?}");
    };
    assert_eq!(*store, "kube");
    assert!(!err.is_retryable(), "retrying cannot help: {err}");
    assert!(source.is_some(), "kube's own error is kept as the source");
    for needle in [
        "--kubeconfig-file",
        "--kube-api-url",
        "in-cluster",
        "service account",
    ] {
        assert!(detail.contains(needle), "{needle:?} missing from: {detail}");
    }
}
