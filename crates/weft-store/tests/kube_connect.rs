//! How the Kubernetes store finds its way, against the in-repo API server:
//! the node's name, the annotation prefix, the kubeconfig and its token,
//! the net config file and the TLS client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_kube;

use common_kube::{Cluster, NETCONF, acquire};
use weft_core::netconf;
use weft_store::LeaseStore;
use weft_store::kube::{KubeLeaseStore, KubeOptions, NodeIdentity};

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
    acquire(&store, "192.0.2.1", "ee:a4:86:c3:7f:56")
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
