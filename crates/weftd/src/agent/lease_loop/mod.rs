//! Holding a lease: acquire it, follow the peers, renew in time, and take a
//! lease again if ours vanishes (flanneld exits there). The lease and each
//! peer snapshot are published on watch channels; the dataplane task turns
//! them into kernel state and subnet.env.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::NetConfig;
use weft_store::{AcquireRequest, LeaseStore, PeerSnapshot, StoreError};

use super::renewal;
use super::shutdown::Shutdown;
use super::status::StatusHandle;
use super::subnet_file;
use super::wg_rotation::Published;
use crate::flags::Flags;

type SnapshotRx = watch::Receiver<Option<Arc<PeerSnapshot>>>;

/// Where the lease loop publishes what it holds.
pub struct Publish {
    pub lease: watch::Sender<Option<Lease>>,
    pub snapshot: watch::Sender<Option<Arc<PeerSnapshot>>>,
    /// New BackendData to publish at once (a WireGuard key rotation).
    pub backend: watch::Receiver<Option<Published>>,
}

/// Retries `acquire` on transient errors until it succeeds, a permanent
/// error occurs, or shutdown is requested (`Ok(None)`).
async fn acquire<S: LeaseStore>(
    store: &S,
    cfg: &NetConfig,
    req: &AcquireRequest,
    shutdown: &Shutdown,
) -> Result<Option<Lease>> {
    let mut delay = Duration::from_millis(500);
    loop {
        let attempt = tokio::select! {
            r = store.acquire(cfg, req) => r,
            _ = shutdown.requested() => return Ok(None),
        };
        match attempt {
            Ok(lease) => return Ok(Some(lease)),
            Err(e) if e.is_transient() => {
                tracing::warn!("cannot acquire a lease yet: {e}; retrying in {delay:.1?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.requested() => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e).context("failed to acquire a lease"),
        }
    }
}

/// Starts (or restarts, for a new own subnet) the peer watch.
fn start_watch<S: LeaseStore>(
    store: &Arc<S>,
    cfg: &NetConfig,
    own: LeaseSubnets,
) -> (SnapshotRx, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let (store, cfg) = (Arc::clone(store), cfg.clone());
    let task = tokio::spawn(async move { store.watch_peers(cfg, own, tx).await });
    (rx, task)
}

pub async fn run<S: LeaseStore>(
    store: S,
    flags: &Flags,
    cfg: &NetConfig,
    attrs: LeaseAttrs,
    status: &StatusHandle,
    publish: &Publish,
    shutdown: &Shutdown,
) -> Result<()> {
    let mut republish = publish.backend.clone();
    let store = Arc::new(store);
    // No sender (no WireGuard, or tests): the arm below is never taken.
    let mut republish_open = true;
    let mut req = AcquireRequest {
        attrs,
        previous: subnet_file::previous_subnets(&flags.subnet_file),
    };
    let Some(mut lease) = acquire(&*store, cfg, &req, shutdown).await? else {
        return Ok(());
    };
    tracing::info!(subnets = %lease.subnets, "lease acquired");
    status.set_lease(&lease);
    publish.lease.send_replace(Some(lease.clone()));

    let margin = Duration::from_secs(flags.subnet_lease_renew_margin_minutes.max(1) as u64 * 60);
    let (mut rx, mut watch_task) = start_watch(&store, cfg, lease.subnets);
    let mut renew_at = next_renewal(&lease, margin);
    // Renewals failed in a row: a store outage is warned about once, not
    // at every retry (the peer watch reports it in `weft status` too).
    let mut renew_failures = 0u32;
    // Something the peers must learn now (a new key, a new address) is not
    // in the store yet: a failed write is retried within a second or two,
    // not at the outage pace. A renumbered NIC breaks the store
    // connection bound to the old address, so the first try often fails.
    let mut publish_pending = false;
    loop {
        let renew_now = tokio::select! {
            _ = shutdown.requested() => break,
            _ = sleep_until(renew_at) => true,
            changed = republish.changed(), if republish_open => {
                if changed.is_err() {
                    republish_open = false;
                    false
                } else {
                    // A key rotation (the devices already use the new
                    // key) or a renumbered interface: the lease must say
                    // so now, not at the next renewal.
                    if let Some(p) = republish.borrow_and_update().clone() {
                        apply_published(&mut lease.attrs, p);
                        req.attrs = lease.attrs.clone();
                        publish_pending = true;
                    }
                    true
                }
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the peer watch stopped unexpectedly");
                }
                let snapshot = rx.borrow_and_update().clone();
                let own_missing = snapshot.as_ref().is_some_and(|s| !s.own_present);
                if let Some(s) = &snapshot {
                    tracing::debug!(peers = s.accepted_count(), skipped = s.peers.rejected.len(), "peers changed");
                }
                status.set_snapshot(snapshot.clone());
                publish.snapshot.send_replace(snapshot);
                own_missing
            }
        };
        if !renew_now {
            continue;
        }
        match store.renew(&lease).await {
            Ok(renewed) => {
                publish_pending = false;
                if renew_failures > 0 {
                    tracing::info!(failures = renew_failures, "our lease is renewed again");
                    renew_failures = 0;
                }
                lease = renewed;
                status.set_lease(&lease);
                publish.lease.send_if_modified(|held| {
                    let changed = held.as_ref().map(|l| (&l.subnets, &l.attrs))
                        != Some((&lease.subnets, &lease.attrs));
                    *held = Some(lease.clone());
                    changed
                });
                renew_at = next_renewal(&lease, margin);
                tracing::debug!(subnets = %lease.subnets, "lease renewed");
            }
            Err(StoreError::LeaseGone { key }) => {
                tracing::error!(
                    %key,
                    "our lease vanished from the store (expired or deleted); taking a lease again"
                );
                req.previous = lease.subnets;
                let Some(new) = acquire(&*store, cfg, &req, shutdown).await? else {
                    break;
                };
                if new.subnets != lease.subnets {
                    tracing::error!(
                        old = %lease.subnets,
                        new = %new.subnets,
                        "our old subnet was taken by another node: this node's subnet changed; pods must be recreated"
                    );
                    watch_task.abort();
                    (rx, watch_task) = start_watch(&store, cfg, new.subnets);
                } else {
                    tracing::warn!(subnets = %new.subnets, "lease taken again with the same subnet");
                }
                lease = new;
                status.set_lease(&lease);
                publish.lease.send_replace(Some(lease.clone()));
                renew_at = next_renewal(&lease, margin);
            }
            Err(e) => {
                let mut retry = renewal::retry_delay(SystemTime::now(), lease.expiration);
                renew_failures += 1;
                if publish_pending {
                    retry = retry.min(Duration::from_secs(1 << renew_failures.min(5)));
                }
                if renew_failures == 1 {
                    tracing::warn!(
                        "cannot renew our lease: {e}; retrying in {retry:.1?} and until the store answers (the dataplane is kept meanwhile)"
                    );
                } else {
                    tracing::debug!(
                        failures = renew_failures,
                        "cannot renew our lease yet: {e}; retrying in {retry:.1?}"
                    );
                }
                renew_at = Some(tokio::time::Instant::now() + retry);
            }
        }
    }
    watch_task.abort();
    Ok(())
}

/// Takes what the dataplane asks to publish into the lease's attributes;
/// says what changed.
fn apply_published(attrs: &mut LeaseAttrs, p: Published) {
    if p.v4.is_some() && p.v4 != attrs.backend_data
        || p.v6.is_some() && p.v6 != attrs.backend_v6_data
    {
        tracing::info!("publishing the new WireGuard public key in the lease");
    }
    if let Some(v4) = p.v4 {
        attrs.backend_data = Some(v4);
    }
    if let Some(v6) = p.v6 {
        attrs.backend_v6_data = Some(v6);
    }
    if let Some(ip) = p.public_ip.filter(|ip| attrs.public_ip != Some(*ip)) {
        tracing::info!(from = ?attrs.public_ip, to = %ip, "publishing this node's new address in the lease");
        attrs.public_ip = Some(ip);
    }
    if let Some(ip) = p.public_ipv6.filter(|ip| attrs.public_ipv6 != Some(*ip)) {
        tracing::info!(from = ?attrs.public_ipv6, to = %ip, "publishing this node's new IPv6 address in the lease");
        attrs.public_ipv6 = Some(ip);
    }
}

fn next_renewal(lease: &Lease, margin: Duration) -> Option<tokio::time::Instant> {
    renewal::renew_delay(SystemTime::now(), lease.expiration, margin)
        .map(|d| tokio::time::Instant::now() + d)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
