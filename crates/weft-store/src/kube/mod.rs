//! The Kubernetes lease store: flannel's `--kube-subnet-mgr`.
//!
//! The node's subnet is its `spec.podCIDR(s)`, chosen by the
//! controller-manager; what it tells its peers lives in annotations under
//! `--kube-annotation-prefix`, written with a strategic-merge PATCH on
//! `nodes/<name>/status` exactly as flannel writes them, so flannel and
//! weft nodes read each other during a migration. Peers come from a node
//! list+watch and are screened like etcd leases before they reach the
//! planner. Leases never expire: a node keeps its podCIDR for life.
//!
//! The client is kube-rs (`Api<Node>`: get, list, watch, patch_status).
//! weft runs its own list+watch rather than `kube::runtime::watcher` so that
//! a relist after `410 Gone` swaps the whole view at once (the snapshot
//! never empties) and so that it shares the etcd store's
//! keep-the-last-snapshot behaviour.

mod client;
mod keys;
mod node;
mod publish;
#[cfg(test)]
mod tests;
mod watch;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use tokio::sync::OnceCell;
use tracing::warn;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::{self, NetConfig};

use crate::{AcquireRequest, LeaseStore, SnapshotSender, StoreError};
pub use keys::{AnnotationKeys, DEFAULT_PREFIX, PrefixError};

/// Which node this agent runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeIdentity {
    /// `NODE_NAME`.
    Name(String),
    /// `POD_NAME` + `POD_NAMESPACE`: the node is the pod's `spec.nodeName`.
    Pod { namespace: String, name: String },
}

impl NodeIdentity {
    /// From the environment, as flannel: `NODE_NAME` if set, else
    /// `POD_NAME` and `POD_NAMESPACE`.
    pub fn from_env() -> Result<NodeIdentity, StoreError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(name) = var("NODE_NAME") {
            return Ok(NodeIdentity::Name(name));
        }
        match (var("POD_NAME"), var("POD_NAMESPACE")) {
            (Some(name), Some(namespace)) => Ok(NodeIdentity::Pod { namespace, name }),
            _ => Err(StoreError::refused(
                client::STORE,
                "env variables POD_NAME and POD_NAMESPACE must be set (or NODE_NAME): the \
                 DaemonSet sets them from the downward API (fieldRef metadata.name / \
                 metadata.namespace)",
            )),
        }
    }
}

/// How to reach the API and what to publish there.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// `--kube-api-url`.
    pub api_url: Option<String>,
    /// `--kubeconfig-file`. Neither this nor `api_url`: in-cluster config.
    pub kubeconfig: Option<PathBuf>,
    /// `--kube-annotation-prefix` (normalised as flannel does).
    pub annotation_prefix: String,
    /// `--net-config-path`: net-conf.json (the ConfigMap's key).
    pub net_config_path: PathBuf,
    /// `--set-node-network-unavailable`: set `NetworkUnavailable=False`
    /// once the lease is held.
    pub set_node_network_unavailable: bool,
    pub node: NodeIdentity,
    /// Pause between looks while the node is not registered or has no
    /// podCIDR yet (flannel polls every 3 s).
    pub poll_interval: Duration,
}

impl KubeOptions {
    /// flannel's defaults for everything but the node.
    pub fn new(node: NodeIdentity) -> KubeOptions {
        KubeOptions {
            api_url: None,
            kubeconfig: None,
            annotation_prefix: DEFAULT_PREFIX.to_owned(),
            net_config_path: PathBuf::from("/etc/kube-flannel/net-conf.json"),
            set_node_network_unavailable: true,
            node,
            poll_interval: Duration::from_secs(3),
        }
    }
}

/// A [`LeaseStore`] on the Kubernetes API.
pub struct KubeLeaseStore {
    nodes: Api<Node>,
    client: kube::Client,
    keys: AnnotationKeys,
    opts: KubeOptions,
    node_name: OnceCell<String>,
    health: crate::StoreHealth,
    /// The attributes last written to our node: a renewal that finds the
    /// annotations differ tells an operator's edit (warned about) from a
    /// change of ours (a rotated key, a new address).
    published: std::sync::Mutex<Option<LeaseAttrs>>,
}

impl KubeLeaseStore {
    /// Checks the options and builds the client; no request is made yet
    /// (the API may be down while the agent starts).
    pub async fn connect(opts: KubeOptions) -> Result<KubeLeaseStore, StoreError> {
        let keys = AnnotationKeys::new(&opts.annotation_prefix).map_err(|e| {
            let detail = format!("--kube-annotation-prefix {:?}: {e}", opts.annotation_prefix);
            StoreError::refused(client::STORE, detail).because(e)
        })?;
        let client = client::build(opts.api_url.as_deref(), opts.kubeconfig.as_deref()).await?;
        Ok(KubeLeaseStore {
            nodes: Api::all(client.clone()),
            client,
            keys,
            opts,
            node_name: OnceCell::new(),
            health: crate::StoreHealth::default(),
            published: std::sync::Mutex::new(None),
        })
    }

    pub fn annotation_keys(&self) -> &AnnotationKeys {
        &self.keys
    }

    /// This agent's node, looked up once (from the pod when needed).
    pub async fn node_name(&self) -> Result<&str, StoreError> {
        self.node_name
            .get_or_try_init(|| async {
                match &self.opts.node {
                    NodeIdentity::Name(n) => Ok(n.clone()),
                    NodeIdentity::Pod { namespace, name } => {
                        self.node_of_pod(namespace, name).await
                    }
                }
            })
            .await
            .map(String::as_str)
    }

    /// This node's podCIDRs as the API holds them now, in one look (no
    /// waiting, no retry): for a preflight (`weft check`). `Ok(None)` while
    /// the controller-manager has not assigned any.
    pub async fn pod_cidrs_now(&self) -> Result<Option<Vec<String>>, StoreError> {
        let name = self.node_name().await?.to_owned();
        let what = format!("cannot get node {name}");
        let node = client::call(self.nodes.get(&name))
            .await
            .map_err(|f| client::store_error(&what, f))?;
        let cidrs = node::pod_cidrs(&node).map_err(|detail| {
            StoreError::refused(client::STORE, format!("node {name}: {detail}"))
        })?;
        Ok(cidrs.map(|c| {
            c.v4.map(|n| n.to_string())
                .into_iter()
                .chain(c.v6.map(|n| n.to_string()))
                .collect()
        }))
    }

    async fn node_of_pod(&self, namespace: &str, name: &str) -> Result<String, StoreError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("error retrieving pod spec for '{namespace}/{name}'");
        let pod = publish::retry(&what, || pods.get(name))
            .await
            .map_err(|f| client::store_error(&what, f))?;
        pod.spec
            .and_then(|s| s.node_name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                StoreError::refused(
                    client::STORE,
                    format!("node name not present in pod spec '{namespace}/{name}'"),
                )
            })
    }
}

impl LeaseStore for KubeLeaseStore {
    fn kind(&self) -> &'static str {
        client::STORE
    }

    /// net-conf.json from `--net-config-path`, validated (flannel only
    /// parses it in this mode).
    async fn network_config(&self) -> Result<NetConfig, StoreError> {
        let path = &self.opts.net_config_path;
        let text = std::fs::read_to_string(path).map_err(|e| {
            let detail = format!(
                "failed to read net conf {}: {e}; mount the ConfigMap kube-flannel-cfg there or \
                 point --net-config-path at net-conf.json",
                path.display()
            );
            StoreError::refused(client::STORE, detail).because(e)
        })?;
        Ok(netconf::parse(&text)?)
    }

    async fn stored_public_ips(&self) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), StoreError> {
        let node = self.registered_node().await?;
        Ok(node::stored_public_ips(&self.keys, &node))
    }

    /// Our own node's annotations: the node is ours by name, whatever
    /// address it published.
    async fn previous_attrs(
        &self,
        _public_ip: Option<Ipv4Addr>,
        _public_ipv6: Option<Ipv6Addr>,
    ) -> Result<Option<LeaseAttrs>, StoreError> {
        let node = self.registered_node().await?;
        Ok(node::published_attrs(&self.keys, &node))
    }

    async fn acquire(&self, cfg: &NetConfig, req: &AcquireRequest) -> Result<Lease, StoreError> {
        self.acquire_lease(cfg, &req.attrs).await
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, StoreError> {
        self.renew_lease(lease).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.release_lease(lease).await
    }

    async fn watch_peers(&self, cfg: NetConfig, own: LeaseSubnets, tx: SnapshotSender) {
        let own_name = match self.node_name().await {
            Ok(n) => n.to_owned(),
            Err(e) => {
                warn!("cannot tell which node is ours ({e}); watching peers without it");
                String::new()
            }
        };
        watch::watch_peers(
            &self.nodes,
            &self.keys,
            &cfg,
            own,
            &own_name,
            tx,
            &self.health,
        )
        .await
    }

    fn health(&self) -> crate::StoreHealth {
        self.health.clone()
    }
}
