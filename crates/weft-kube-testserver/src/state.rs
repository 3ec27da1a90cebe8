//! The server's objects and their history: one resourceVersion counter for
//! everything (as etcd's revision), every Node change recorded as a watch
//! event, watchers fed under the same lock so none misses or reorders one.
//!
//! Follows "API Concepts → Efficient detection of changes" and "Resource
//! versions" (<https://kubernetes.io/docs/reference/using-api/api-concepts/>):
//! a list reports the collection's resourceVersion; a watch from version N
//! sends every change after N; one from a version older than the retained
//! history gets `410 Gone`.

use std::collections::{BTreeMap, VecDeque};

use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::alloc::{AllocError, CidrSet};
use crate::faults::Faults;
use crate::objects::{self, NodeSpec};
use crate::options::ServerOptions;
use crate::status::ApiError;

/// One encoded watch event line (`{"type":…,"object":…}\n`).
pub type Line = Vec<u8>;

pub(crate) struct Watcher {
    id: u64,
    tx: mpsc::UnboundedSender<Line>,
}

pub(crate) struct State {
    pub opts: ServerOptions,
    rv: u64,
    next_uid: u64,
    next_watcher: u64,
    nodes: BTreeMap<String, Value>,
    pods: BTreeMap<(String, String), Value>,
    /// (resourceVersion, encoded event), oldest first.
    history: VecDeque<(u64, Line)>,
    /// A watch may resume from any version >= this one.
    oldest_rv: u64,
    watchers: Vec<Watcher>,
    cidrs: Vec<CidrSet>,
    pub faults: Faults,
}

pub(crate) fn event_line(kind: &str, object: &Value) -> Line {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    line
}

/// What a new watch starts with.
pub(crate) struct WatchStart {
    pub id: u64,
    pub backlog: Vec<Line>,
    pub rx: mpsc::UnboundedReceiver<Line>,
}

impl State {
    pub fn new(opts: ServerOptions) -> Result<State, AllocError> {
        let cidrs = opts
            .cluster_cidrs
            .iter()
            .map(|c| {
                let mask = match c {
                    IpNet::V4(_) => opts.node_cidr_mask_v4,
                    IpNet::V6(_) => opts.node_cidr_mask_v6,
                };
                CidrSet::new(*c, mask)
            })
            .collect::<Result<_, _>>()?;
        Ok(State {
            opts,
            rv: 1,
            next_uid: 1,
            next_watcher: 1,
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            history: VecDeque::new(),
            oldest_rv: 1,
            watchers: Vec::new(),
            cidrs,
            faults: Faults::default(),
        })
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        objects::uid(self.next_uid)
    }

    /// Records a Node event and hands it to every watcher.
    fn emit(&mut self, kind: &str, object: &Value) {
        let line = event_line(kind, object);
        self.watchers.retain(|w| w.tx.send(line.clone()).is_ok());
        self.history.push_back((self.rv, line));
        while self.history.len() > self.opts.history_limit {
            if let Some((rv, _)) = self.history.pop_front() {
                self.oldest_rv = rv;
            }
        }
    }

    /// Stores `node` at a new resourceVersion and emits `kind`.
    fn commit(&mut self, mut node: Value, kind: &str) -> Value {
        let rv = self.bump();
        node["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let name = objects::str_at(&node, &["metadata", "name"])
            .unwrap_or_default()
            .to_owned();
        self.emit(kind, &node);
        self.nodes.insert(name, node.clone());
        node
    }

    pub fn add_node(&mut self, spec: &NodeSpec) -> Result<Value, ApiError> {
        if self.nodes.contains_key(&spec.name) {
            return Err(ApiError::already_exists("nodes", &spec.name));
        }
        let uid = self.uid();
        let mut node = objects::node(spec, &uid);
        match &spec.pod_cidrs {
            Some(cidrs) => {
                for c in cidrs.iter().filter_map(|c| c.parse::<IpNet>().ok()) {
                    self.cidrs.iter_mut().for_each(|s| s.occupy(c));
                }
                objects::set_pod_cidrs(&mut node, cidrs);
            }
            None if spec
                .allocate_pod_cidr
                .unwrap_or(self.opts.allocate_node_cidrs) =>
            {
                let cidrs = self.allocate()?;
                objects::set_pod_cidrs(&mut node, &cidrs);
            }
            None => {}
        }
        Ok(self.commit(node, "ADDED"))
    }

    /// Registers a Node given whole, e.g. a fixture taken with
    /// `kubectl get node -o json`; the server sets its resourceVersion.
    pub fn add_node_object(&mut self, mut node: Value) -> Result<Value, ApiError> {
        let name = objects::str_at(&node, &["metadata", "name"])
            .ok_or_else(|| ApiError::bad_request("the node has no metadata.name"))?
            .to_owned();
        if self.nodes.contains_key(&name) {
            return Err(ApiError::already_exists("nodes", &name));
        }
        if node["metadata"]["uid"].as_str().is_none() {
            node["metadata"]["uid"] = Value::String(self.uid());
        }
        node["kind"] = Value::String("Node".into());
        node["apiVersion"] = Value::String("v1".into());
        if let Some(cidrs) = node["spec"]["podCIDRs"].as_array() {
            for c in cidrs
                .iter()
                .filter_map(|c| c.as_str()?.parse::<IpNet>().ok())
            {
                self.cidrs.iter_mut().for_each(|s| s.occupy(c));
            }
        }
        Ok(self.commit(node, "ADDED"))
    }

    fn allocate(&mut self) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        for set in &mut self.cidrs {
            out.push(
                set.allocate()
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .to_string(),
            );
        }
        Ok(out)
    }

    /// What the range allocator does for a node without a podCIDR.
    pub fn assign_pod_cidr(&mut self, name: &str) -> Result<Value, ApiError> {
        let mut node = self.get_node(name)?;
        if node["spec"].get("podCIDR").is_some() {
            return Ok(node);
        }
        let cidrs = self.allocate()?;
        objects::set_pod_cidrs(&mut node, &cidrs);
        Ok(self.commit(node, "MODIFIED"))
    }

    pub fn delete_node(&mut self, name: &str) -> Result<Value, ApiError> {
        let mut node = self
            .nodes
            .remove(name)
            .ok_or_else(|| ApiError::not_found("nodes", name))?;
        if let Some(cidrs) = node["spec"]["podCIDRs"].as_array() {
            for c in cidrs
                .iter()
                .filter_map(|c| c.as_str()?.parse::<IpNet>().ok())
            {
                self.cidrs
                    .iter_mut()
                    .filter(|s| s.family_matches(&c))
                    .for_each(|s| s.release(c));
            }
        }
        let rv = self.bump();
        node["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        self.emit("DELETED", &node);
        Ok(node)
    }

    pub fn get_node(&self, name: &str) -> Result<Value, ApiError> {
        self.nodes
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found("nodes", name))
    }

    /// Replaces a node with `f`'s result at a new resourceVersion (a write
    /// by some other client: an operator, the kubelet).
    pub fn modify_node(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        let mut node = self.get_node(name)?;
        f(&mut node);
        Ok(self.commit(node, "MODIFIED"))
    }

    /// Stores a patched node (already validated by the caller).
    pub fn replace_node(&mut self, node: Value) -> Value {
        self.commit(node, "MODIFIED")
    }

    /// `{"kind":"NodeList",…}`; list items carry no kind/apiVersion, as
    /// the server sends them.
    pub fn list_nodes(&self) -> Value {
        let items: Vec<Value> = self
            .nodes
            .values()
            .map(|n| {
                let mut n = n.clone();
                if let Some(map) = n.as_object_mut() {
                    map.remove("kind");
                    map.remove("apiVersion");
                }
                n
            })
            .collect();
        json!({
            "kind": "NodeList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    pub fn add_pod(&mut self, namespace: &str, name: &str, node: &str) -> Value {
        let uid = self.uid();
        let rv = self.bump();
        let pod = objects::pod(namespace, name, node, &uid, rv);
        self.pods
            .insert((namespace.to_owned(), name.to_owned()), pod.clone());
        pod
    }

    pub fn get_pod(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found("pods", name))
    }

    /// Starts a watch. `from` is the `resourceVersion` parameter: `None`
    /// or `"0"` starts with a synthetic ADDED per existing node ("Start at
    /// Most Recent" / "Start at Any"); `N` replays every change after N.
    pub fn start_watch(&mut self, from: Option<&str>) -> Result<WatchStart, ApiError> {
        let backlog: Vec<Line> = match from.filter(|v| !v.is_empty() && *v != "0") {
            None => self
                .nodes
                .values()
                .map(|n| event_line("ADDED", n))
                .collect(),
            Some(v) => {
                let n: u64 = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {v:?}"))
                })?;
                if n < self.oldest_rv {
                    return Err(ApiError::expired(n, self.oldest_rv));
                }
                self.history
                    .iter()
                    .filter(|(rv, _)| *rv > n)
                    .map(|(_, l)| l.clone())
                    .collect()
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_watcher;
        self.next_watcher += 1;
        self.watchers.push(Watcher { id, tx });
        Ok(WatchStart { id, backlog, rx })
    }

    /// Queues a BOOKMARK at the current resourceVersion on one watch. It
    /// goes through the watcher's queue, behind every event it follows.
    pub fn bookmark(&mut self, id: u64) {
        let line = event_line(
            "BOOKMARK",
            &json!({"kind": "Node", "apiVersion": "v1",
                    "metadata": {"resourceVersion": self.rv.to_string()}}),
        );
        if let Some(w) = self.watchers.iter().find(|w| w.id == id) {
            let _ = w.tx.send(line);
        }
    }

    pub fn end_watch(&mut self, id: u64) {
        self.watchers.retain(|w| w.id != id);
    }

    /// Ends every open watch (clients must watch again).
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    /// Forgets all history, as when other objects moved the etcd revision
    /// on and it was compacted: open watches end, and resuming from any
    /// version handed out so far gets 410 (clients must list again).
    pub fn compact(&mut self) {
        self.history.clear();
        self.bump();
        self.oldest_rv = self.rv;
        self.close_watches();
    }
}
