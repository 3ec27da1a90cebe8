//! The Kubernetes store: can this node reach the API with the agent's
//! credentials, and has the controller-manager given it a podCIDR? The
//! second is the most common reason a flannel or weft node never becomes
//! ready ("pod cidr not assigned"), and it is invisible from the node.

use std::path::PathBuf;

use weft_store::kube::{KubeLeaseStore, KubeOptions, NodeIdentity};

use super::Finding;

/// How `weft check` reaches the API, as weftd's flags.
#[derive(Debug, Clone)]
pub struct KubeCheck {
    pub kubeconfig: Option<PathBuf>,
    pub api_url: Option<String>,
    /// `NODE_NAME`, `--node-name`, or the host name (the kubelet's default).
    pub node: String,
}

pub fn findings(check: &KubeCheck) -> Vec<Finding> {
    let result = super::query(async {
        let mut opts = KubeOptions::new(NodeIdentity::Name(check.node.clone()));
        opts.kubeconfig = check.kubeconfig.clone();
        opts.api_url = check.api_url.clone();
        let store = KubeLeaseStore::connect(opts)
            .await
            .map_err(|e| e.to_string())?;
        store.pod_cidrs_now().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(Some(cidrs)) => vec![
            Finding::ok("kubernetes API", format!("node {} is there", check.node)),
            Finding::ok(
                "podCIDR",
                format!("node {} has {}", check.node, cidrs.join(",")),
            ),
        ],
        Ok(None) => vec![
            Finding::ok("kubernetes API", format!("node {} is there", check.node)),
            Finding::fail(
                "podCIDR",
                format!(
                    "node {} has no podCIDR: weftd waits (\"pod cidr not assigned\")",
                    check.node
                ),
                "start kube-controller-manager with --allocate-node-cidrs \
                 --cluster-cidr=<net-conf.json's Network> (kubeadm: --pod-network-cidr)",
            ),
        ],
        Err(e) => vec![Finding::fail(
            "kubernetes API",
            format!("cannot read node {}: {e}", check.node),
            "check --kubeconfig-file / --kube-api-url, the node name (NODE_NAME or --node-name) \
             and that the credentials may get nodes",
        )],
    }
}
