//! Node and Pod objects shaped like a real cluster's
//! (`kubectl get node -o json` of a kubeadm node, trimmed to what matters:
//! metadata with uid, resourceVersion, creationTimestamp, labels and
//! annotations; `spec.podCIDR(s)`; `status.addresses` and `conditions`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::time;

/// A node to register, as the kubelet would (`kubelet --register-node`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSpec {
    pub name: String,
    /// `status.addresses[type=InternalIP]` (one per family).
    #[serde(rename = "internalIP")]
    pub internal_ip: Option<IpAddr>,
    #[serde(rename = "internalIPv6")]
    pub internal_ipv6: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// podCIDRs set at registration (as with `kubelet --pod-cidr` or a
    /// pre-built fixture); `None` lets the allocator decide.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Option<Vec<String>>,
    /// Override of the server's `allocate_node_cidrs` for this node.
    #[serde(rename = "allocatePodCIDR")]
    pub allocate_pod_cidr: Option<bool>,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            ..NodeSpec::default()
        }
    }

    pub fn internal_ip(mut self, ip: IpAddr) -> NodeSpec {
        match ip {
            IpAddr::V4(_) => self.internal_ip = Some(ip),
            IpAddr::V6(_) => self.internal_ipv6 = Some(ip),
        }
        self
    }

    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> NodeSpec {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn pod_cidrs(mut self, cidrs: &[&str]) -> NodeSpec {
        self.pod_cidrs = Some(cidrs.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    /// Registers the node without a podCIDR, whatever the server's
    /// allocator would do (a controller-manager without
    /// `--allocate-node-cidrs`).
    pub fn without_pod_cidr(mut self) -> NodeSpec {
        self.pod_cidrs = None;
        self.allocate_pod_cidr = Some(false);
        self
    }
}

/// A deterministic UUID-shaped uid, unique within one server.
pub fn uid(n: u64) -> String {
    format!("5a1d0000-0000-4000-8000-{n:012x}")
}

/// The Node a freshly registered kubelet leaves, before any CNI touched it.
pub fn node(spec: &NodeSpec, uid: &str) -> Value {
    let mut labels: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    labels.insert("kubernetes.io/hostname".into(), spec.name.clone());
    labels.extend(spec.labels.clone());
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    annotations.insert("node.alpha.kubernetes.io/ttl".into(), "0".into());
    annotations.insert(
        "volumes.kubernetes.io/controller-managed-attach-detach".into(),
        "true".into(),
    );
    annotations.extend(spec.annotations.clone());
    let mut addresses: Vec<Value> = [spec.internal_ip, spec.internal_ipv6]
        .into_iter()
        .flatten()
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": spec.name}));
    let now = time::now();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "uid": uid,
            "resourceVersion": "0",
            "creationTimestamp": now,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {},
        "status": {
            "addresses": addresses,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    })
}

/// Sets `spec.podCIDR` (the first) and `spec.podCIDRs`, as the
/// controller-manager's range allocator does.
pub fn set_pod_cidrs(node: &mut Value, cidrs: &[String]) {
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    let spec = obj
        .entry("spec")
        .or_insert_with(|| Value::Object(Map::new()));
    if let (Some(spec), Some(first)) = (spec.as_object_mut(), cidrs.first()) {
        spec.insert("podCIDR".into(), Value::String(first.clone()));
        spec.insert("podCIDRs".into(), json!(cidrs));
    }
}

/// A running Pod bound to a node: what `GET pods/{name}` returns for the
/// agent's own pod (only `spec.nodeName` matters to the agent).
pub fn pod(namespace: &str, name: &str, node_name: &str, uid: &str, rv: u64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": rv.to_string(),
            "creationTimestamp": time::now(),
            "labels": {"app": "flannel"},
        },
        "spec": {
            "nodeName": node_name,
            "hostNetwork": true,
            "containers": [{"name": "kube-flannel", "image": "weft:dev"}],
        },
        "status": {"phase": "Running"},
    })
}

/// The string at `path` (object keys), if there is one.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}
