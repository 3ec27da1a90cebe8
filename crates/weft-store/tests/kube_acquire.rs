//! The Kubernetes store holding this node's lease, against the in-repo API
//! server: what it writes, when it waits, what it refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_kube;

use std::time::Duration;

use common_kube::{Cluster, NETCONF, count_requests, golden_node, vxlan};
use weft_core::netconf;
use weft_kube_testserver::NodeSpec;
use weft_store::kube::{KubeLeaseStore, KubeOptions, NodeIdentity};
use weft_store::{AcquireRequest, LeaseStore, StoreError};

const MAC: &str = "ee:a4:86:c3:7f:56";

fn request(ip: &str, mac: &str) -> AcquireRequest {
    AcquireRequest {
        attrs: vxlan(ip, mac),
        previous: Default::default(),
    }
}

fn flannel_annotations(node: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    node["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("flannel.alpha.coreos.com/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
    let cfg = store.network_config().await.unwrap();
    let lease = store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap();
    assert_eq!(lease.subnets.v4.unwrap().to_string(), "10.244.1.0/24");
    assert_eq!(lease.expiration, None, "kube leases never expire");

    let node = c.server.node("node1").unwrap();
    // Byte for byte what flannel wrote on a real cluster.
    assert_eq!(
        serde_json::Value::Object(flannel_annotations(&node)),
        golden_annotations
    );
    let cond = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NetworkUnavailable")
        .expect("the condition is set")
        .clone();
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "FlannelIsUp");
    assert_eq!(cond["message"], "Flannel is running on this node");
    assert!(cond["lastTransitionTime"].as_str().unwrap().ends_with('Z'));
    // The Ready condition is kept: conditions merge by type.
    assert!(
        node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready")
    );

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
    let cfg = store.network_config().await.unwrap();
    store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap();
    let node = c.server.node("node1").unwrap();
    assert!(
        !node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "NetworkUnavailable")
    );
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
    let store = c.store("node1").await;
    let cfg = store.network_config().await.unwrap();
    let acquiring =
        tokio::spawn(async move { store.acquire(&cfg, &request("192.0.2.1", MAC)).await });
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
    let lease = tokio::time::timeout(Duration::from_secs(10), acquiring)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(lease.subnets.v4.unwrap().to_string(), c.pod_cidr("node1"));
}

#[tokio::test]
async fn waits_for_the_node_to_register() {
    let c = Cluster::start().await;
    let store = c.store("late").await;
    let cfg = store.network_config().await.unwrap();
    let acquiring =
        tokio::spawn(async move { store.acquire(&cfg, &request("192.0.2.5", MAC)).await });
    // Negative window: acquire must still be waiting while the node is not
    // registered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!acquiring.is_finished());
    c.add_node("late", "192.0.2.5");
    let lease = tokio::time::timeout(Duration::from_secs(10), acquiring)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(lease.subnets.v4.is_some());
}

#[tokio::test]
async fn a_pod_cidr_outside_the_network_is_refused_with_flannels_message() {
    let c = Cluster::start().await;
    c.server
        .add_node(NodeSpec::new("node1").pod_cidrs(&["10.99.1.0/24"]))
        .unwrap();
    let store = c.store("node1").await;
    let cfg = store.network_config().await.unwrap();
    let err = store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap_err();
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
    let cfg = store.network_config().await.unwrap();
    store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap();
    let node = c.server.node("node1").unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"],
        "192.0.2.1"
    );
    // Two conflicts, one success, then the condition.
    assert_eq!(
        count_requests(&c.server, "PATCH", "/api/v1/nodes/node1/status"),
        4
    );
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    c.server.fail_next("patch", "nodes/status", 503, 2);
    c.server.fail_next("get", "nodes", 500, 1);
    let store = c.store("node1").await;
    let cfg = store.network_config().await.unwrap();
    store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap();
    assert_eq!(
        c.server.node("node1").unwrap()["metadata"]["annotations"]["flannel.alpha.coreos.com/kube-subnet-manager"],
        "true"
    );
}

#[tokio::test]
async fn missing_rbac_is_refused_with_the_fix() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    c.server.forbid("patch", "nodes/status");
    let store = c.store("node1").await;
    let cfg = store.network_config().await.unwrap();
    let err = store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap_err();
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
    let cfg = store.network_config().await.unwrap();
    assert_eq!(store.previous_attrs(None, None).await.unwrap(), None);
    store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap();
    drop(store);

    // A new agent process: it finds what it published before.
    let store = c.store("node1").await;
    let previous = store.previous_attrs(None, None).await.unwrap().unwrap();
    assert_eq!(previous, vxlan("192.0.2.1", MAC));
    let patches_before = count_requests(&c.server, "PATCH", "/api/v1/nodes/node1/status");
    store
        .acquire(
            &cfg,
            &AcquireRequest {
                attrs: previous,
                previous: Default::default(),
            },
        )
        .await
        .unwrap();
    // Same annotations: nothing to write but the condition.
    assert_eq!(
        count_requests(&c.server, "PATCH", "/api/v1/nodes/node1/status"),
        patches_before + 1
    );
    let node = c.server.node("node1").unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"],
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
    let cfg = store.network_config().await.unwrap();
    let lease = store
        .acquire(&cfg, &request("198.51.100.4", MAC))
        .await
        .unwrap();
    // The lease keeps the detected address (the local dataplane uses it)...
    assert_eq!(lease.attrs.public_ip, Some("198.51.100.4".parse().unwrap()));
    // ...while peers are told the overwrite (NAT).
    let node = c.server.node("node1").unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"],
        "203.0.113.9"
    );
}

#[tokio::test]
async fn renew_puts_removed_annotations_back_and_release_removes_them() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    let store = c.store("node1").await;
    let cfg = store.network_config().await.unwrap();
    let lease = store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap();

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
async fn the_node_name_can_come_from_the_pod() {
    let c = Cluster::start().await;
    c.add_node("worker-7", "192.0.2.7");
    c.server
        .add_pod("kube-flannel", "kube-flannel-ds-x2v9q", "worker-7");
    let opts = KubeOptions {
        node: NodeIdentity::Pod {
            namespace: "kube-flannel".into(),
            name: "kube-flannel-ds-x2v9q".into(),
        },
        ..c.options("unused")
    };
    let store = KubeLeaseStore::connect(opts.clone()).await.unwrap();
    assert_eq!(store.node_name().await.unwrap(), "worker-7");

    let missing = KubeOptions {
        node: NodeIdentity::Pod {
            namespace: "kube-flannel".into(),
            name: "nope".into(),
        },
        ..opts
    };
    let store = KubeLeaseStore::connect(missing).await.unwrap();
    let err = store.node_name().await.unwrap_err().to_string();
    assert!(
        err.contains("error retrieving pod spec for 'kube-flannel/nope'"),
        "{err}"
    );
}

#[tokio::test]
async fn a_custom_annotation_prefix_is_normalised_as_flannel_does() {
    let c = Cluster::start().await;
    c.add_node("node1", "192.0.2.1");
    let opts = KubeOptions {
        annotation_prefix: "example.com/weft".into(),
        ..c.options("node1")
    };
    let store = KubeLeaseStore::connect(opts).await.unwrap();
    let cfg = store.network_config().await.unwrap();
    store
        .acquire(&cfg, &request("192.0.2.1", MAC))
        .await
        .unwrap();
    let node = c.server.node("node1").unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["example.com/weft-backend-type"],
        "vxlan"
    );
    assert_eq!(
        node["metadata"]["annotations"]["example.com/weft-kube-subnet-manager"],
        "true"
    );

    for (prefix, message) in [
        ("a.com/b/c", "prefix can contain at most single slash"),
        ("nodots", "prefix must be in a format: fqdn/[0-9a-z-_]*"),
    ] {
        let opts = KubeOptions {
            annotation_prefix: prefix.into(),
            ..c.options("node1")
        };
        let err = KubeLeaseStore::connect(opts)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(message), "{prefix}: {err}");
    }
}

#[tokio::test]
async fn a_kubeconfig_with_a_token_is_used_and_the_api_url_overrides_its_server() {
    let c = Cluster::with(weft_kube_testserver::ServerOptions {
        token: Some("s3cret".into()),
        ..common_kube::fast_options()
    })
    .await;
    c.add_node("node1", "192.0.2.1");
    let kubeconfig = c.dir.path().join("kubeconfig");
    c.server.write_kubeconfig(&kubeconfig).unwrap();
    let opts = KubeOptions {
        api_url: None,
        kubeconfig: Some(kubeconfig.clone()),
        ..c.options("node1")
    };
    let store = KubeLeaseStore::connect(opts.clone()).await.unwrap();
    assert!(store.previous_attrs(None, None).await.is_ok());

    // A kubeconfig naming a dead server, corrected by --kube-api-url.
    let text = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .replace(&c.server.url(), "http://127.0.0.1:1");
    std::fs::write(&kubeconfig, text).unwrap();
    let store = KubeLeaseStore::connect(KubeOptions {
        api_url: Some(c.server.url()),
        ..opts.clone()
    })
    .await
    .unwrap();
    assert!(store.previous_attrs(None, None).await.is_ok());

    // Without the token: refused, with a hint.
    let store = KubeLeaseStore::connect(KubeOptions {
        kubeconfig: None,
        api_url: Some(c.server.url()),
        ..opts
    })
    .await
    .unwrap();
    let err = store
        .previous_attrs(None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not accept these credentials"), "{err}");
}

#[tokio::test]
async fn the_net_config_is_read_and_validated() {
    let c = Cluster::start().await;
    let store = c.store("node1").await;
    assert_eq!(
        store.network_config().await.unwrap(),
        netconf::parse(NETCONF).unwrap()
    );
    std::fs::write(
        &c.netconf,
        r#"{"Network":"10.244.0.0/30","Backend":{"Type":"vxlan"}}"#,
    )
    .unwrap();
    let err = store.network_config().await.unwrap_err().to_string();
    assert!(err.contains("too small"), "{err}");
    std::fs::remove_file(&c.netconf).unwrap();
    let err = store.network_config().await.unwrap_err().to_string();
    assert!(err.contains("--net-config-path"), "{err}");
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
    let lease = store
        .acquire(
            &cfg,
            &AcquireRequest {
                attrs,
                previous: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(lease.subnets.v4.unwrap().to_string(), "10.244.0.0/24");
    assert_eq!(lease.subnets.v6.unwrap().to_string(), "fd00:10:244::/64");
    let a = &c.server.node("node1").unwrap()["metadata"]["annotations"];
    assert_eq!(a["flannel.alpha.coreos.com/public-ipv6"], "2001:db8::1");
    assert_eq!(
        a["flannel.alpha.coreos.com/backend-v6-data"],
        r#"{"VNI":1,"VtepMAC":"2e:51:00:00:00:01"}"#
    );
    assert_eq!(a["flannel.alpha.coreos.com/public-ip"], "192.0.2.1");
}

#[tokio::test]
async fn an_https_client_builds_on_the_single_ring_provider() {
    // Building the TLS connector picks rustls' process-wide provider: with
    // two providers compiled in (ring and aws-lc-rs) this would panic.
    let c = Cluster::start().await;
    let opts = KubeOptions {
        api_url: Some("https://127.0.0.1:1".into()),
        ..c.options("node1")
    };
    assert!(KubeLeaseStore::connect(opts).await.is_ok());
}
