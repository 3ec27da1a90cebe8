//! Holding the lease: wait for our node and its podCIDR, publish our
//! annotations (strategic-merge PATCH on `nodes/<name>/status`, as flannel),
//! mark the node's network available, put the annotations back if someone
//! removes them, and remove them on release.

use std::future::Future;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{info, warn};
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::NetConfig;

use super::KubeLeaseStore;
use super::client::{self, Failure, STORE};
use super::node::{self, PodCidrs};
use crate::StoreError;
use crate::backoff::Backoff;

/// How long one operation keeps retrying a transient failure before it
/// reports the store unavailable (flannel polls 30 s too); the agent then
/// retries the whole operation.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Read-modify-write rounds lost to concurrent writers before giving up.
const MAX_CONFLICTS: u32 = 10;

/// Runs `op` until it succeeds, fails for good, or transient failures
/// have lasted [`RETRY_FOR`].
pub(crate) async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    loop {
        match client::call(op()).await {
            Err(Failure::Transient { detail, .. }) if start.elapsed() < RETRY_FOR => {
                let delay = backoff.next_delay();
                warn!("{what}: {detail}; retrying in {delay:.1?}");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

fn unassigned(name: &str) -> String {
    format!(
        "node {name:?} pod cidr not assigned: the controller-manager gives nodes a podCIDR only \
         when it runs with --allocate-node-cidrs=true and --cluster-cidr (kubeadm: \
         --pod-network-cidr; k3s: --cluster-cidr), or set spec.podCIDR on the node; waiting"
    )
}

impl KubeLeaseStore {
    /// Our Node, waiting while it is not registered yet.
    pub(crate) async fn registered_node(&self) -> Result<Node, StoreError> {
        let name = self.node_name().await?.to_owned();
        let what = format!("cannot read node {name:?}");
        loop {
            match retry(&what, || self.nodes.get(&name)).await {
                Ok(node) => return Ok(node),
                Err(Failure::NotFound) => {
                    warn!(
                        "node {name:?} is not registered with the API server yet (is the kubelet \
                         running, and is NODE_NAME the node's name?); waiting"
                    );
                    tokio::time::sleep(self.opts.poll_interval).await;
                }
                Err(f) => return Err(client::store_error(&what, f)),
            }
        }
    }

    pub(crate) async fn acquire_lease(
        &self,
        cfg: &NetConfig,
        attrs: &LeaseAttrs,
    ) -> Result<Lease, StoreError> {
        let (node, cidrs) = loop {
            let node = self.registered_node().await?;
            match node::pod_cidrs(&node) {
                Ok(Some(cidrs)) => break (node, cidrs),
                Ok(None) => {
                    warn!("{}", unassigned(node::name(&node)));
                    tokio::time::sleep(self.opts.poll_interval).await;
                }
                Err(e) => return Err(StoreError::refused(STORE, e)),
            }
        };
        let subnets = lease_subnets(cfg, node::name(&node), cidrs)?;
        self.publish(node, attrs).await?;
        if self.opts.set_node_network_unavailable {
            self.mark_network_available().await?;
        }
        Ok(Lease {
            subnets,
            attrs: attrs.clone(),
            expiration: None,
        })
    }

    /// Writes whatever annotations are missing or stale, re-reading the
    /// node when a concurrent write wins (409).
    async fn publish(&self, mut node: Node, attrs: &LeaseAttrs) -> Result<(), StoreError> {
        let name = node::name(&node).to_owned();
        let what = format!("cannot annotate node {name:?}");
        for _ in 0..MAX_CONFLICTS {
            let want = node::desired(&self.keys, attrs, &node);
            let patch = node::missing(&want, &node);
            if patch.is_empty() {
                return Ok(());
            }
            // The resourceVersion makes the PATCH conditional: the
            // overwrite annotations we read must still be current.
            let body = json!({"metadata": {
                "annotations": patch,
                "resourceVersion": node.metadata.resource_version,
            }});
            match retry(&what, || self.patch_status(&name, &body)).await {
                Ok(_) => {
                    info!(node = %name, annotations = ?patch.keys().collect::<Vec<_>>(), "published our lease in the node's annotations");
                    *self
                        .published
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(attrs.clone());
                    return Ok(());
                }
                Err(Failure::Conflict) => {
                    info!(node = %name, "the node changed while we annotated it; reading it again");
                    node = self.registered_node().await?;
                }
                Err(f) => return Err(client::store_error(&what, f)),
            }
        }
        Err(StoreError::unavailable(
            STORE,
            format!("{what}: it changed {MAX_CONFLICTS} times in a row while we wrote"),
        ))
    }

    async fn patch_status(&self, name: &str, body: &Value) -> Result<Node, kube::Error> {
        self.nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(body))
            .await
    }

    /// flannel's CompleteLease: `NetworkUnavailable=False`, reason
    /// `FlannelIsUp`, merged into the conditions by type.
    async fn mark_network_available(&self) -> Result<(), StoreError> {
        let name = self.node_name().await?.to_owned();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let condition = NodeCondition {
            type_: "NetworkUnavailable".into(),
            status: "False".into(),
            reason: Some("FlannelIsUp".into()),
            message: Some("Flannel is running on this node".into()),
            last_transition_time: Some(now.clone()),
            last_heartbeat_time: Some(now),
        };
        let body = json!({"status": {"conditions": [condition]}});
        let what = format!("cannot set the NetworkUnavailable condition of node {name:?}");
        retry(&what, || self.patch_status(&name, &body))
            .await
            .map(|_| ())
            .map_err(|f| client::store_error(&what, f))
    }

    /// Nothing expires; this puts our annotations back if they were removed
    /// and notices a node that was deleted or given another podCIDR.
    pub(crate) async fn renew_lease(&self, lease: &Lease) -> Result<Lease, StoreError> {
        let name = self.node_name().await?.to_owned();
        let what = format!("cannot read node {name:?}");
        let gone = || StoreError::LeaseGone {
            key: format!("node {name}"),
        };
        let node = match retry(&what, || self.nodes.get(&name)).await {
            Ok(n) => n,
            Err(Failure::NotFound) => return Err(gone()),
            Err(f) => return Err(client::store_error(&what, f)),
        };
        let cidrs = node::pod_cidrs(&node).ok().flatten().unwrap_or_default();
        let same = |held: Option<IpNet>, now: Option<IpNet>| held.is_none() || held == now;
        if !same(lease.subnets.v4.map(IpNet::V4), cidrs.v4.map(IpNet::V4))
            || !same(lease.subnets.v6.map(IpNet::V6), cidrs.v6.map(IpNet::V6))
        {
            return Err(gone());
        }
        if !node::missing(&node::desired(&self.keys, &lease.attrs, &node), &node).is_empty() {
            let ours_changed = self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|last| *last != lease.attrs);
            if ours_changed {
                info!(node = %name, "publishing our changed lease (a new key or address)");
            } else {
                warn!(node = %name, "our annotations were removed or changed; writing them again");
            }
            self.publish(node, &lease.attrs).await?;
        }
        Ok(Lease {
            expiration: None,
            ..lease.clone()
        })
    }

    /// Removes the annotations weft writes (not the operator's overrides).
    pub(crate) async fn release_lease(&self, _lease: &Lease) -> Result<(), StoreError> {
        let name = self.node_name().await?.to_owned();
        let what = format!("cannot remove our annotations from node {name:?}");
        let node = match retry(&what, || self.nodes.get(&name)).await {
            Ok(n) => n,
            Err(Failure::NotFound) => return Ok(()),
            Err(f) => return Err(client::store_error(&what, f)),
        };
        let have = node::annotations(&node);
        let gone: serde_json::Map<String, Value> = self
            .keys
            .written()
            .iter()
            .filter(|k| have.contains_key(**k))
            .map(|k| ((*k).to_owned(), Value::Null))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let body = json!({"metadata": {"annotations": gone}});
        match retry(&what, || self.patch_status(&name, &body)).await {
            Ok(_) | Err(Failure::NotFound) => {
                info!(node = %name, "removed our annotations");
                Ok(())
            }
            Err(f) => Err(client::store_error(&what, f)),
        }
    }
}

/// The lease's subnets: our podCIDRs of the enabled families, each inside
/// the configured network (flannel's messages).
fn lease_subnets(cfg: &NetConfig, name: &str, cidrs: PodCidrs) -> Result<LeaseSubnets, StoreError> {
    let refused = |detail: String| StoreError::refused(STORE, detail);
    let mut out = LeaseSubnets::default();
    if let Some(pool) = &cfg.ipv4 {
        let cidr = cidrs.v4.ok_or_else(|| {
            refused(format!(
                "node {name:?} has no IPv4 podCIDR but net-conf.json enables IPv4: give the \
                 controller-manager an IPv4 --cluster-cidr, or set \"EnableIPv4\": false"
            ))
        })?;
        if !pool.network.contains(&IpNet::V4(cidr)) {
            return Err(refused(format!(
                "subnet {:?} specified in the flannel net config doesn't contain {:?} PodCIDR of \
                 the {name:?} node: make net-conf.json's Network match the controller-manager's \
                 --cluster-cidr",
                pool.network.to_string(),
                cidr.to_string()
            )));
        }
        out.v4 = Some(cidr);
    }
    if let Some(pool) = &cfg.ipv6 {
        let cidr = cidrs.v6.ok_or_else(|| {
            refused(format!(
                "node {name:?} has no IPv6 podCIDR but net-conf.json enables IPv6: give the \
                 controller-manager an IPv6 --cluster-cidr too (dual-stack), or set \
                 \"EnableIPv6\": false"
            ))
        })?;
        if !pool.network.contains(&IpNet::V6(cidr)) {
            return Err(refused(format!(
                "subnet {:?} specified in the flannel net config doesn't contain {:?} IPv6 \
                 PodCIDR of the {name:?} node: make net-conf.json's IPv6Network match the \
                 controller-manager's IPv6 --cluster-cidr",
                pool.network.to_string(),
                cidr.to_string()
            )));
        }
        out.v6 = Some(cidr);
    }
    for (pool, sn) in cfg.pools().zip(out.iter()) {
        if pool.subnet_len != sn.prefix_len() {
            info!(
                podcidr = %sn,
                subnet_len = pool.subnet_len,
                "the podCIDR's length differs from SubnetLen; in Kubernetes mode the \
                 controller-manager's --node-cidr-mask-size decides (SubnetLen is ignored, as in flannel)"
            );
        }
    }
    Ok(out)
}
