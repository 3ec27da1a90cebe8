//! Peers from a node list+watch, as screened snapshots.
//!
//! One list, then a watch from its resourceVersion (with bookmarks); a
//! watch the server ends is resumed from the last version seen; `410 Gone`
//! means list again, and the new listing replaces the old view in one step,
//! so a snapshot never empties on the way. While the API is unreachable the
//! last snapshot stays published. Only nodes annotated
//! `kube-subnet-manager: "true"` are peers; our own node is left out by
//! name. Each node is checked when its relevant fields change (not on
//! every snapshot); the shared [`Publisher`] screens, warns once per change
//! of a skipped node, counts, and publishes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use tracing::{info, warn};
use weft_core::lease::LeaseSubnets;
use weft_core::netconf::NetConfig;
use weft_core::peer;

use super::client::{self, Failure};
use super::keys::AnnotationKeys;
use super::node;
use crate::SnapshotSender;
use crate::backoff::Backoff;
use crate::outage::OutageLog;
use crate::publisher::{Entry, Ids, Publisher};

/// How the store is named in log lines.
const STORE: &str = "kubernetes";

/// What the server is asked to keep a watch open for (kube-rs' default).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// No event nor bookmark for this long: the connection is presumed dead.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64 + 30);
/// Events applied before one snapshot is published (a burst coalesces).
const BATCH: usize = 1000;

struct Ctx<'a> {
    keys: &'a AnnotationKeys,
    /// The config peers are screened against (see [`screening_config`]).
    cfg: NetConfig,
    own_name: &'a str,
    /// The peers, by node name, ordered by creationTimestamp then name
    /// (oldest first, as flannel), versioned by [`fingerprint`].
    publisher: Publisher<String>,
    /// The version the watch resumes from.
    resource_version: String,
    /// Whether the last watch connection was established (and not lost
    /// since), so that an outage counts once.
    watching: bool,
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

/// A hash of the fields a lease is made of (the podCIDRs and every
/// annotation weft writes, `kube-subnet-manager` included); other changes
/// (the kubelet's status updates) neither re-check nor re-warn.
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

fn created(n: &Node) -> String {
    n.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default()
}

impl Ctx<'_> {
    /// A peer node as the publisher keeps it: checked only when its
    /// relevant fields changed since the version the publisher holds.
    fn entry(&self, n: &Node, created: String, fingerprint: u64) -> Entry<String> {
        let checked = match self.publisher.cached(node::name(n), fingerprint) {
            Some(kept) => kept.clone(),
            None => node::is_managed(self.keys, n).then(|| {
                let (v4, v6) = (self.cfg.ipv4.is_some(), self.cfg.ipv6.is_some());
                peer::precheck_other(&self.cfg, node::peer_lease(self.keys, v4, v6, n))
            }),
        };
        Entry {
            order: created,
            version: fingerprint,
            checked,
        }
    }

    /// Whether our own node carries a lease (when it does not, the agent
    /// acquires again).
    fn own_present(&self, n: &Node) -> bool {
        node::is_managed(self.keys, n) && node::annotations(n).contains_key(&self.keys.backend_type)
    }

    /// The watch has to start over for `reason` (`relist` or `error`).
    fn restarted(&mut self, reason: &'static str) {
        if reason == "relist" || self.watching {
            self.publisher.restarted(reason);
        }
        self.watching = false;
    }

    fn note_version(&mut self, rv: String) {
        self.publisher.set_revision(rv.parse().unwrap_or(0));
        self.resource_version = rv;
    }

    /// A fresh listing replaces every node at once.
    fn listed(&mut self, items: &[Node], resource_version: String) {
        let mut own_present = false;
        let mut entries = Vec::with_capacity(items.len());
        for n in items {
            let name = node::name(n);
            if name == self.own_name {
                own_present = self.own_present(n);
            } else {
                let e = self.entry(n, created(n), fingerprint(self.keys, n));
                entries.push((name.to_owned(), e));
            }
        }
        self.publisher.replace_all(0, entries);
        self.publisher.set_own_present(own_present);
        self.note_version(resource_version);
    }

    /// One node event. Returns whether the snapshot may change.
    fn apply(&mut self, n: &Node, deleted: bool) -> bool {
        let name = node::name(n);
        if name == self.own_name {
            let present = !deleted && self.own_present(n);
            return self.publisher.set_own_present(present);
        }
        if deleted {
            return self.publisher.remove(name);
        }
        let (created, fp) = (created(n), fingerprint(self.keys, n));
        if self.publisher.holds(name, &created, fp) {
            return false;
        }
        let e = self.entry(n, created, fp);
        self.publisher.upsert(name.to_owned(), e)
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
    health: &crate::StoreHealth,
) {
    let mut ctx = Ctx {
        keys,
        cfg: screening_config(cfg, &own),
        own_name,
        publisher: Publisher::new(own, Ids::Nodes),
        resource_version: String::new(),
        watching: false,
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut outage = OutageLog::new("node watch").with_health(health.clone());
    // Whether the publisher holds a listing to resume from (false at the
    // start and after 410 Gone: list again).
    let mut listed = false;
    let mut listed_at = Instant::now();
    while !tx.is_closed() {
        if !listed {
            match client::call(nodes.list(&ListParams::default())).await {
                Ok(list) => {
                    listed_at = Instant::now();
                    outage.recovered(STORE);
                    let rv = list.metadata.resource_version.unwrap_or_default();
                    ctx.listed(&list.items, rv);
                    ctx.publisher.publish(&tx);
                    backoff.reset();
                    listed = true;
                }
                Err(f) => {
                    outage.failed(
                        STORE,
                        &format!(
                            "cannot list nodes ({f:?}); keeping the last peer snapshot and retrying"
                        ),
                    );
                    if !backoff.pause(&tx).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let ended = tokio::select! {
            e = watch_once(nodes, &mut ctx, &tx, &mut backoff, &mut outage) => e,
            _ = tx.closed() => return,
        };
        match ended {
            Ended::Resume { quick } => {
                if quick && !backoff.pause(&tx).await {
                    return;
                }
            }
            Ended::Relist => {
                info!("node watch expired (410 Gone); listing the nodes again");
                listed = false;
                // A server answering 410 to a version it just listed must
                // not be hammered.
                if listed_at.elapsed() < Duration::from_secs(1) && !backoff.pause(&tx).await {
                    return;
                }
            }
            Ended::Failed(detail) => {
                outage.failed(
                    STORE,
                    &format!(
                        "{detail}; keeping the last peer snapshot, resuming from resourceVersion {}",
                        ctx.resource_version
                    ),
                );
                if !backoff.pause(&tx).await {
                    return;
                }
            }
        }
    }
}

/// Runs one watch connection from `ctx.resource_version`.
async fn watch_once(
    nodes: &Api<Node>,
    ctx: &mut Ctx<'_>,
    tx: &SnapshotSender,
    backoff: &mut Backoff,
    outage: &mut OutageLog,
) -> Ended {
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    let started = Instant::now();
    let stream = match client::call(nodes.watch(&params, &ctx.resource_version)).await {
        Ok(s) => {
            outage.recovered(STORE);
            ctx.watching = true;
            // Publishes the restart count if it moved.
            ctx.publisher.publish(tx);
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
                    note_version(ctx, &n);
                    changed |= ctx.apply(&n, false);
                }
                Ok(WatchEvent::Deleted(n)) => {
                    note_version(ctx, &n);
                    changed |= ctx.apply(&n, true);
                }
                Ok(WatchEvent::Bookmark(b)) => ctx.note_version(b.metadata.resource_version),
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
            ctx.publisher.publish_events(tx).await;
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

fn note_version(ctx: &mut Ctx<'_>, n: &Node) {
    if let Some(rv) = &n.metadata.resource_version {
        ctx.note_version(rv.clone());
    }
}
