//! Peers from a node list+watch, as screened snapshots.
//!
//! One list, then a watch from its resourceVersion (with bookmarks); a
//! watch the server ends is resumed from the last version seen; `410 Gone`
//! means list again, and the new listing replaces the old view in one step,
//! so a snapshot never empties on the way. While the API is unreachable the
//! last snapshot stays published. Only nodes annotated
//! `kube-subnet-manager: "true"` are peers; our own node is left out by
//! name. A malformed node is skipped with one warning per change of its
//! relevant fields, and counted.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use tracing::{debug, info, warn};
use weft_core::lease::{Lease, LeaseSubnets};
use weft_core::netconf::NetConfig;
use weft_core::peer::{self, PeerRejection};

use super::client::{self, Failure};
use super::keys::AnnotationKeys;
use super::node;
use crate::backoff::Backoff;
use crate::outage::OutageLog;

/// How the store is named in log lines.
const STORE: &str = "kubernetes";
use crate::{PeerSnapshot, SnapshotSender};

/// What the server is asked to keep a watch open for (kube-rs' default).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// No event nor bookmark for this long: the connection is presumed dead.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64 + 30);
/// Events applied before one snapshot is published (a burst coalesces).
const BATCH: usize = 1000;

/// One node, reduced to what matters here.
struct Entry {
    created: String,
    fingerprint: u64,
    managed: bool,
    lease: Result<Lease, PeerRejection>,
}

struct Ctx<'a> {
    keys: &'a AnnotationKeys,
    /// The config peers are screened against (see [`screening_config`]).
    cfg: NetConfig,
    own: LeaseSubnets,
    own_name: &'a str,
    warned: HashMap<String, u64>,
    skipped_total: BTreeMap<&'static str, u64>,
    /// See [`PeerSnapshot::watch_restarts`]: a working watch lost, or a
    /// 410; not every failed attempt to reconnect during one outage.
    watch_restarts: BTreeMap<&'static str, u64>,
    /// Whether the last watch connection was established (and not lost
    /// since), so that an outage counts once.
    watching: bool,
}

struct View {
    resource_version: String,
    nodes: BTreeMap<String, Entry>,
    own_present: bool,
}

/// In Kubernetes mode the controller-manager's `--node-cidr-mask-size`
/// decides the subnet length (flannel ignores SubnetLen there), so peers
/// are checked against the length of our own podCIDR.
fn screening_config(cfg: &NetConfig, own: &LeaseSubnets) -> NetConfig {
    let mut c = cfg.clone();
    if let (Some(p), Some(sn)) = (c.ipv4.as_mut(), own.v4) {
        p.subnet_len = sn.prefix_len();
    }
    if let (Some(p), Some(sn)) = (c.ipv6.as_mut(), own.v6) {
        p.subnet_len = sn.prefix_len();
    }
    c
}

/// A hash of the fields a lease is made of; other changes (the kubelet's
/// status updates) neither re-parse nor re-warn.
fn fingerprint(keys: &AnnotationKeys, n: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    let spec = n.spec.as_ref();
    spec.and_then(|s| s.pod_cidr.as_ref()).hash(&mut h);
    spec.and_then(|s| s.pod_cidrs.as_ref()).hash(&mut h);
    let a = node::annotations(n);
    for k in keys.written() {
        a.get(k).hash(&mut h);
    }
    h.finish()
}

impl Ctx<'_> {
    fn entry(&self, n: &Node, old: Option<&Entry>) -> Entry {
        let fp = fingerprint(self.keys, n);
        let managed = node::is_managed(self.keys, n);
        let created = n
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let lease = match old.filter(|o| o.fingerprint == fp) {
            Some(old) => old.lease.clone(),
            None => {
                let (v4, v6) = (self.cfg.ipv4.is_some(), self.cfg.ipv6.is_some());
                node::peer_lease(self.keys, v4, v6, n)
            }
        };
        Entry {
            created,
            fingerprint: fp,
            managed,
            lease,
        }
    }

    /// The watch has to start over for `reason` (`relist` or `error`).
    fn restarted(&mut self, reason: &'static str) {
        if reason == "relist" || self.watching {
            *self.watch_restarts.entry(reason).or_default() += 1;
        }
        self.watching = false;
    }

    fn apply(&self, view: &mut View, n: &Node, deleted: bool) {
        let name = node::name(n).to_owned();
        if name == self.own_name {
            view.own_present = !deleted
                && node::is_managed(self.keys, n)
                && node::annotations(n).contains_key(&self.keys.backend_type);
            return;
        }
        if deleted {
            view.nodes.remove(&name);
        } else {
            let e = self.entry(n, view.nodes.get(&name));
            view.nodes.insert(name, e);
        }
    }

    fn publish(&mut self, view: &View, tx: &SnapshotSender) {
        let mut ordered: Vec<(&String, &Entry)> =
            view.nodes.iter().filter(|(_, e)| e.managed).collect();
        ordered.sort_by(|a, b| (&a.1.created, a.0).cmp(&(&b.1.created, b.0)));
        let screened = peer::screen_others(
            &self.cfg,
            &self.own,
            ordered.iter().map(|(k, e)| ((*k).clone(), e.lease.clone())),
        );
        for rejected in &screened.rejected {
            let fp = view.nodes.get(&rejected.id).map_or(0, |e| e.fingerprint);
            if self.warned.get(&rejected.id) != Some(&fp) {
                warn!(node = %rejected.id, reason = rejected.reason.kind(), "{rejected}");
                self.warned.insert(rejected.id.clone(), fp);
                *self
                    .skipped_total
                    .entry(rejected.reason.kind())
                    .or_default() += 1;
            }
        }
        self.warned.retain(|k, _| view.nodes.contains_key(k));
        let snapshot = PeerSnapshot {
            revision: view.resource_version.parse().unwrap_or(0),
            peers: screened,
            own_present: view.own_present,
            skipped_total: self
                .skipped_total
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            watch_restarts: self
                .watch_restarts
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        };
        tx.send_if_modified(|current| {
            let changed = current.as_ref().is_none_or(|c| {
                c.peers != snapshot.peers
                    || c.own_present != snapshot.own_present
                    || c.skipped_total != snapshot.skipped_total
                    || c.watch_restarts != snapshot.watch_restarts
            });
            if changed {
                debug!(resource_version = %view.resource_version, peers = snapshot.peers.accepted.len(),
                       skipped = snapshot.peers.rejected.len(), "peer snapshot");
                *current = Some(Arc::new(snapshot));
            }
            changed
        });
    }
}

async fn pause(backoff: &mut Backoff, tx: &SnapshotSender) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(backoff.next_delay()) => true,
        _ = tx.closed() => false,
    }
}

/// How one watch connection ended.
enum Ended {
    /// Closed by the server (its timeout) or idle: watch again.
    Resume { quick: bool },
    /// 410: list again.
    Relist,
    /// An error: wait, then watch again from the same version.
    Failed(String),
}

pub(crate) async fn watch_peers(
    nodes: &Api<Node>,
    keys: &AnnotationKeys,
    cfg: &NetConfig,
    own: LeaseSubnets,
    own_name: &str,
    tx: SnapshotSender,
) {
    let mut ctx = Ctx {
        keys,
        cfg: screening_config(cfg, &own),
        own,
        own_name,
        warned: HashMap::new(),
        skipped_total: BTreeMap::new(),
        watch_restarts: BTreeMap::new(),
        watching: false,
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut outage = OutageLog::new("node watch");
    let mut view: Option<View> = None;
    let mut listed_at = Instant::now();
    while !tx.is_closed() {
        let mut current = match view.take() {
            Some(v) => v,
            None => {
                match client::call(nodes.list(&ListParams::default())).await {
                    Ok(list) => {
                        listed_at = Instant::now();
                        outage.recovered(STORE);
                        let mut v = View {
                            resource_version: list.metadata.resource_version.unwrap_or_default(),
                            nodes: BTreeMap::new(),
                            own_present: false,
                        };
                        for n in &list.items {
                            ctx.apply(&mut v, n, false);
                        }
                        ctx.publish(&v, &tx);
                        backoff.reset();
                        v
                    }
                    Err(f) => {
                        outage.failed(
                        STORE,
                        &format!("cannot list nodes ({f:?}); keeping the last peer snapshot and retrying"),
                    );
                        if !pause(&mut backoff, &tx).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let ended = tokio::select! {
            e = watch_once(nodes, &mut ctx, &mut current, &tx, &mut backoff, &mut outage) => e,
            _ = tx.closed() => return,
        };
        match ended {
            Ended::Resume { quick } => {
                view = Some(current);
                if quick && !pause(&mut backoff, &tx).await {
                    return;
                }
            }
            Ended::Relist => {
                info!("node watch expired (410 Gone); listing the nodes again");
                // A server answering 410 to a version it just listed must
                // not be hammered.
                if listed_at.elapsed() < Duration::from_secs(1) && !pause(&mut backoff, &tx).await {
                    return;
                }
            }
            Ended::Failed(detail) => {
                outage.failed(
                    STORE,
                    &format!(
                        "{detail}; keeping the last peer snapshot, resuming from resourceVersion {}",
                        current.resource_version
                    ),
                );
                view = Some(current);
                if !pause(&mut backoff, &tx).await {
                    return;
                }
            }
        }
    }
}

/// Runs one watch connection from `view.resource_version`.
async fn watch_once(
    nodes: &Api<Node>,
    ctx: &mut Ctx<'_>,
    view: &mut View,
    tx: &SnapshotSender,
    backoff: &mut Backoff,
    outage: &mut OutageLog,
) -> Ended {
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    let started = Instant::now();
    let stream = match client::call(nodes.watch(&params, &view.resource_version)).await {
        Ok(s) => {
            outage.recovered(STORE);
            ctx.watching = true;
            // Publishes the restart count if it moved.
            ctx.publish(view, tx);
            s
        }
        Err(Failure::Gone) => {
            ctx.restarted("relist");
            return Ended::Relist;
        }
        Err(f) => {
            ctx.restarted("error");
            return Ended::Failed(format!("{f:?}"));
        }
    };
    let mut stream = std::pin::pin!(stream);
    let mut saw_event = false;
    loop {
        let first = match tokio::time::timeout(WATCH_IDLE, stream.next()).await {
            Err(_) => {
                warn!("no node event nor bookmark for {WATCH_IDLE:?}; watching again");
                ctx.restarted("error");
                return Ended::Resume { quick: false };
            }
            Ok(None) => {
                let quick = !saw_event && started.elapsed() < Duration::from_secs(1);
                return Ended::Resume { quick };
            }
            Ok(Some(item)) => item,
        };
        if !saw_event {
            // The connection works: failures start from a short wait again.
            saw_event = true;
            backoff.reset();
        }
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match stream.next().now_or_never() {
                Some(Some(item)) => batch.push(item),
                _ => break,
            }
        }
        let mut changed = false;
        let mut end = None;
        for item in batch {
            match item {
                Ok(WatchEvent::Added(n)) | Ok(WatchEvent::Modified(n)) => {
                    note_version(view, &n);
                    ctx.apply(view, &n, false);
                    changed = true;
                }
                Ok(WatchEvent::Deleted(n)) => {
                    note_version(view, &n);
                    ctx.apply(view, &n, true);
                    changed = true;
                }
                Ok(WatchEvent::Bookmark(b)) => view.resource_version = b.metadata.resource_version,
                Ok(WatchEvent::Error(s)) if s.code == 410 => end = Some(Ended::Relist),
                Ok(WatchEvent::Error(s)) => {
                    end = Some(Ended::Failed(format!("{} ({})", s.message, s.code)))
                }
                Err(e) => match client::classify(e) {
                    Failure::Gone => end = Some(Ended::Relist),
                    f => end = Some(Ended::Failed(format!("{f:?}"))),
                },
            }
            if end.is_some() {
                break;
            }
        }
        if changed {
            ctx.publish(view, tx);
        }
        if let Some(e) = end {
            ctx.restarted(match e {
                Ended::Relist => "relist",
                _ => "error",
            });
            return e;
        }
    }
}

fn note_version(view: &mut View, n: &Node) {
    if let Some(rv) = &n.metadata.resource_version {
        view.resource_version = rv.clone();
    }
}
