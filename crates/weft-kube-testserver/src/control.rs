//! How tests drive the cluster: as a library handle ([`TestServer`]
//! methods) and, for other processes such as `weft lab`, over HTTP under
//! `/weft-test/v1/` on the same listener (no authentication: test only).
//!
//! | HTTP | does |
//! | --- | --- |
//! | `POST nodes` (a [`NodeSpec`] as JSON) | registers a node, as a kubelet |
//! | `DELETE nodes/{name}` | deletes it (its podCIDR is released) |
//! | `POST nodes/{name}/pod-cidr` | allocates its podCIDR (controller-manager) |
//! | `POST nodes/{name}/annotations` (`{"k":"v"|null}`) | an operator's `kubectl annotate` |
//! | `POST pods` (`{"namespace","name","nodeName"}`) | a pod bound to a node |
//! | `POST compact` | forgets history: resuming watches get 410 |
//! | `POST outage?seconds=N` | stops serving for N seconds |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{error_response, json_response, param};
use crate::faults::RequestRecord;
use crate::objects::NodeSpec;
use crate::server::{Shared, TestServer};
use crate::status::ApiError;

fn set_annotations(node: &mut Value, changes: &BTreeMap<String, Option<String>>) {
    if !node["metadata"]["annotations"].is_object() {
        node["metadata"]["annotations"] = json!({});
    }
    if let Some(map) = node["metadata"]["annotations"].as_object_mut() {
        for (k, v) in changes {
            match v {
                Some(v) => map.insert(k.clone(), Value::String(v.clone())),
                None => map.remove(k),
            };
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    namespace: String,
    name: String,
    node_name: String,
}

pub(crate) fn handle(
    shared: &Arc<Shared>,
    method: &Method,
    rest: &[&str],
    q: &[(String, String)],
    body: &[u8],
) -> Response {
    let parse = |what: &str| -> Result<Value, ApiError> {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
    };
    let result = match (method.as_str(), rest) {
        ("POST", ["nodes"]) => parse("node").and_then(|v| {
            let spec: NodeSpec =
                serde_json::from_value(v).map_err(|e| ApiError::bad_request(e.to_string()))?;
            shared.lock().add_node(&spec)
        }),
        ("DELETE", ["nodes", name]) => shared.lock().delete_node(name),
        ("POST", ["nodes", name, "pod-cidr"]) => shared.lock().assign_pod_cidr(name),
        ("POST", ["nodes", name, "annotations"]) => parse("annotations").and_then(|v| {
            let changes: BTreeMap<String, Option<String>> =
                serde_json::from_value(v).map_err(|e| ApiError::bad_request(e.to_string()))?;
            shared
                .lock()
                .modify_node(name, |n| set_annotations(n, &changes))
        }),
        ("POST", ["pods"]) => parse("pod").and_then(|v| {
            let p: PodSpec =
                serde_json::from_value(v).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(shared.lock().add_pod(&p.namespace, &p.name, &p.node_name))
        }),
        ("POST", ["compact"]) => {
            let mut state = shared.lock();
            state.compact();
            Ok(json!({"resourceVersion": state.resource_version().to_string()}))
        }
        ("POST", ["outage"]) => {
            let secs = param(q, "seconds")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(5);
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                shared.stop_serving().await;
                tokio::time::sleep(Duration::from_secs(secs)).await;
                if let Err(e) = shared.start_serving().await {
                    tracing::error!("cannot serve again after the outage: {e}");
                }
            });
            Ok(json!({"outageSeconds": secs}))
        }
        _ => Err(ApiError::no_route()),
    };
    match result {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e),
    }
}

/// The library side of the control API.
impl TestServer {
    /// Registers a node (and allocates its podCIDR if the server does).
    pub fn add_node(&self, spec: NodeSpec) -> Result<Value, ApiError> {
        self.shared.lock().add_node(&spec)
    }

    /// Registers a Node object as given (a `kubectl get node -o json`
    /// fixture).
    pub fn add_node_object(&self, node: Value) -> Result<Value, ApiError> {
        self.shared.lock().add_node_object(node)
    }

    pub fn delete_node(&self, name: &str) -> Result<Value, ApiError> {
        self.shared.lock().delete_node(name)
    }

    /// Another client's write: `f` edits the stored node freely.
    pub fn modify_node(&self, name: &str, f: impl FnOnce(&mut Value)) -> Result<Value, ApiError> {
        self.shared.lock().modify_node(name, f)
    }

    /// `kubectl annotate`: `Some` sets, `None` removes.
    pub fn annotate(
        &self,
        name: &str,
        changes: &[(&str, Option<&str>)],
    ) -> Result<Value, ApiError> {
        let changes: BTreeMap<String, Option<String>> = changes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect();
        self.modify_node(name, |n| set_annotations(n, &changes))
    }

    /// The controller-manager allocates this node's podCIDR(s).
    pub fn assign_pod_cidr(&self, name: &str) -> Result<Value, ApiError> {
        self.shared.lock().assign_pod_cidr(name)
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.shared.lock().get_node(name).ok()
    }

    pub fn node_names(&self) -> Vec<String> {
        self.shared.lock().node_names()
    }

    pub fn add_pod(&self, namespace: &str, name: &str, node: &str) -> Value {
        self.shared.lock().add_pod(namespace, name, node)
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    /// Forgets history and ends open watches: clients resuming from any
    /// version they hold get 410 Gone and must list again.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// Ends open watches without losing history (clients resume).
    pub fn close_watches(&self) {
        self.shared.lock().close_watches();
    }

    /// Denies `verb` on `resource` (`nodes`, `nodes/status`, `pods`): 403.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.shared
            .lock()
            .faults
            .forbidden
            .insert((verb.to_owned(), resource.to_owned()));
    }

    pub fn allow(&self, verb: &str, resource: &str) {
        self.shared
            .lock()
            .faults
            .forbidden
            .remove(&(verb.to_owned(), resource.to_owned()));
    }

    /// The next `count` PATCHes on `node` each find it just rewritten by
    /// another writer, so a resourceVersion precondition fails with 409.
    pub fn concurrent_writes_before_patch(&self, node: &str, count: u32) {
        self.shared
            .lock()
            .faults
            .concurrent_writes
            .insert(node.to_owned(), count);
    }

    /// Fails the next `count` `verb` requests on `resource` with `code`.
    pub fn fail_next(&self, verb: &str, resource: &str, code: u16, count: u32) {
        if count > 0 {
            self.shared
                .lock()
                .faults
                .fail_next
                .insert((verb.to_owned(), resource.to_owned()), (code, count));
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().faults.log.clone()
    }
}
