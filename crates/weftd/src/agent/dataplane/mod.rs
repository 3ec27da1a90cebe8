//! The dataplane task: turns the lease and each peer snapshot into kernel
//! state (through the planner and the reconciler), writes subnet.env, keeps
//! the masquerade/forward rules in place, and repairs what is changed under
//! it (a deleted device, a flushed chain) on link events and resyncs.

mod keepers;
mod pass;
mod prepare;
#[cfg(test)]
mod tests;
mod upkeep;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt as _;
use tokio::sync::watch;
use weft_core::lease::Lease;
use weft_core::netconf::NetConfig;
use weft_core::plan::{Desired, LocalIdentity, Underlay};
use weft_core::subnet_env::SubnetEnv;
use weft_dataplane::netlink::{LinkEvent, Netlink};
use weft_dataplane::reconcile::{Kernel, Reconciler, is_weft_device_name};
use weft_dataplane::rules::Rules;
use weft_store::PeerSnapshot;

use super::shutdown::Shutdown;
use super::status::StatusHandle;
use super::wg_rotation::{Published, RotateReply};
use super::wireguard::WireguardState;

/// How often the kernel state is re-read and repaired without a trigger
/// (flannel's host-gw route check runs every 10 s).
pub(super) const RESYNC: Duration = Duration::from_secs(10);

/// The dataplane's state. Generic over the kernel so that its passes (what
/// a lease and a peer snapshot turn into, what the first pass may and may
/// not touch) run in unit tests against `FakeKernel`; the agent runs it on
/// [`Netlink`], which alone has link events ([`Dataplane::run`]).
pub struct Dataplane<K: Kernel = Netlink> {
    reconciler: Reconciler<K>,
    cfg: NetConfig,
    underlay: Underlay,
    /// `uname -r`, read once: the planner's vxlan TX checksum offload
    /// choice depends on it.
    kernel_release: String,
    local: LocalIdentity,
    blackhole: bool,
    /// Until the first pass installs them; then the rules keeper's.
    rules: Option<Rules>,
    rules_policy: keepers::RulesPolicy,
    rules_resync: Duration,
    subnet_file: PathBuf,
    /// `--cni-conf-file`: where the conflist goes once subnet.env is written.
    cni_conf_file: Option<PathBuf>,
    ip_masq: bool,
    status: StatusHandle,
    written: Option<SubnetEnv>,
    wireguard: Option<WireguardState>,
    /// The ipsec backend: charon and the XFRM policies.
    ipsec: Option<super::ipsec::IpsecState>,
    /// The plan the last successful full pass applied: what a new plan
    /// adds to it goes in first, without reading the kernel (see
    /// `Reconciler::apply_additions`).
    applied: Option<Arc<Desired>>,
    peer_log: super::peer_log::PeerLog,
    /// Gives memory a big pass freed back to the kernel.
    trimmer: crate::memory::Trimmer,
    /// Which families' published address is the interface's own (no
    /// `--public-ip(v6)`): those follow a renumbered interface.
    follows_interface: Follows,
    /// A new interface address the lease must publish, once seen.
    renumbered: Option<Published>,
}

/// What the status socket asks of the dataplane task.
pub struct Requests {
    /// `weft wireguard rotate-key`.
    pub rotate: tokio::sync::mpsc::Receiver<RotateReply>,
    /// `weft public-ip ADDR`.
    pub public_ip: tokio::sync::mpsc::Receiver<super::wg_rotation::PublicIpRequest>,
}

/// Per family, whether the lease's public address is the interface's.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Follows {
    pub v4: bool,
    pub v6: bool,
}

#[cfg(test)]
impl Dataplane<weft_dataplane::reconcile::FakeKernel> {
    /// A dataplane over an in-memory kernel: no rules, no WireGuard, no
    /// conflist; subnet.env at `subnet_file`.
    fn for_tests(
        kernel: weft_dataplane::reconcile::FakeKernel,
        cfg: NetConfig,
        underlay: Underlay,
        local: LocalIdentity,
        subnet_file: PathBuf,
    ) -> Self {
        let rules_policy = keepers::RulesPolicy {
            cfg: Arc::new(cfg.clone()),
            masquerade: false,
            forward: false,
            fully_random: true,
        };
        Dataplane {
            reconciler: Reconciler::new(kernel),
            cfg,
            underlay,
            kernel_release: "6.1.0-28-amd64".into(),
            local,
            blackhole: false,
            rules: None,
            rules_policy,
            rules_resync: RESYNC,
            subnet_file,
            cni_conf_file: None,
            ip_masq: false,
            status: StatusHandle::default(),
            written: None,
            wireguard: None,
            ipsec: None,
            applied: None,
            peer_log: Default::default(),
            trimmer: Default::default(),
            follows_interface: Follows { v4: true, v6: true },
            renumbered: None,
        }
    }
}

impl Dataplane<Netlink> {
    pub async fn run(
        mut self,
        mut lease_rx: watch::Receiver<Option<Lease>>,
        mut snap_rx: watch::Receiver<Option<Arc<PeerSnapshot>>>,
        mut requests: Requests,
        republish: watch::Sender<Option<Published>>,
        shutdown: Shutdown,
    ) -> Result<()> {
        let lease = tokio::select! {
            l = lease_rx.wait_for(|l| l.is_some()) => l.map(|l| l.clone()).ok().flatten(),
            _ = shutdown.requested() => return Ok(()),
        };
        let Some(mut lease) = lease else {
            return Ok(());
        };
        self.start(&lease).await?;
        let keepers = self.spawn_keepers(&lease_rx, &shutdown);
        let mut events = subscribe(self.reconciler.netlink());
        let mut resync = tokio::time::interval(RESYNC);
        // WireGuard handshakes and ipsec SAs move on their own: read them
        // often enough for `weft status` and the metrics to be current.
        let mut wg_tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let mut dirty = false;
            tokio::select! {
                _ = shutdown.requested() => break,
                r = lease_rx.changed() => {
                    if r.is_err() { break; }
                    if let Some(l) = lease_rx.borrow_and_update().clone() {
                        lease = l;
                        dirty = true;
                    }
                }
                r = snap_rx.changed() => {
                    if r.is_err() { break; }
                    dirty = true;
                }
                _ = resync.tick() => {
                    self.refresh_underlay().await;
                    self.publish_renumbered(&republish);
                    if events.is_none() {
                        events = subscribe(self.reconciler.netlink());
                    }
                    dirty = true;
                }
                _ = wg_tick.tick(), if self.wireguard.is_some() || self.ipsec.is_some() => {
                    // ipsec tunnels' SA states and counters, for `weft
                    // status`, as often as WireGuard's.
                    if let (Some(ipsec), Some(applied)) = (&self.ipsec, &self.applied) {
                        ipsec.refresh(&applied.ipsec);
                    }
                    let mut due = false;
                    if let Some(wg) = &mut self.wireguard {
                        wg.open_sessions().await;
                        wg.refresh_views(self.status.metrics()).await;
                        self.status.set_wireguard(wg.path(), wg.views());
                        wg.observe_rotation();
                        self.status.set_rotation(&wg.rotation);
                        due = wg.rotation.due(std::time::SystemTime::now());
                    }
                    if due {
                        // --wireguard-key-rotation: the same rotation as
                        // `weft wireguard rotate-key`, on the key's age.
                        tracing::info!("the WireGuard key reached --wireguard-key-rotation's age: rotating it");
                        if self.rotate(&republish).await.is_err()
                            && let Some(wg) = &mut self.wireguard
                        {
                            wg.rotation.failed(std::time::SystemTime::now());
                        }
                        dirty = true;
                    }
                }
                Some((addr, reply)) = requests.public_ip.recv() => {
                    let _ = reply.send(self.set_public_ip(addr, &republish));
                }
                Some(reply) = requests.rotate.recv() => {
                    let answer = self.rotate(&republish).await;
                    let _ = reply.send(answer);
                    // A device that could not be switched was dropped: the
                    // pass reopens it with the new key.
                    dirty = true;
                }
                ev = next_event(&mut events) => match ev {
                    Some(LinkEvent::Deleted { name, .. }) if is_weft_device_name(&name) => {
                        tracing::warn!(device = %name, "our device was deleted; recreating it and every peer entry");
                        dirty = true;
                    }
                    Some(LinkEvent::New { index, .. } | LinkEvent::Address { index })
                        if index == self.underlay.index =>
                    {
                        dirty = self.refresh_underlay().await;
                        self.publish_renumbered(&republish);
                    }
                    Some(LinkEvent::Lost) => {
                        tracing::warn!("link events were dropped by the kernel; resyncing");
                        dirty = true;
                    }
                    Some(_) => {}
                    None => {
                        tracing::warn!("link events were lost; resubscribing and resyncing");
                        events = subscribe(self.reconciler.netlink());
                        dirty = true;
                    }
                },
            }
            if !dirty {
                continue;
            }
            let snapshot = snap_rx.borrow_and_update().clone();
            if let Some(snapshot) = snapshot
                && let Err(e) = self.pass(&lease, &snapshot).await
            {
                tracing::error!(
                    "reconcile pass failed: {}; retrying at the next resync",
                    crate::logging::chain(&e)
                );
            }
            // The loop turned (a pass failing or waiting for the first
            // peer snapshot included): what /healthz watches.
            self.status.pass_finished();
        }
        if let Some(wg) = self.wireguard.take() {
            wg.close().await;
        }
        if let Some(ipsec) = self.ipsec.take() {
            ipsec.close();
        }
        for keeper in keepers {
            keeper.abort();
        }
        Ok(())
    }

    /// Runs one key rotation (see `wg_rotation.rs`) and hands the new
    /// BackendData to the lease loop.
    async fn rotate(
        &mut self,
        republish: &watch::Sender<Option<Published>>,
    ) -> Result<String, String> {
        let Some(wg) = &mut self.wireguard else {
            return Err("this node does not run the wireguard backend".into());
        };
        match wg.rotate().await {
            Ok(published) => {
                self.status.metrics().key_rotated();
                self.status.set_rotation(&wg.rotation);
                republish.send_replace(Some(published));
                Ok(wg.public_key().to_string())
            }
            Err(e) => {
                let why = crate::logging::chain(&e);
                tracing::error!("WireGuard key rotation failed: {why}");
                Err(why)
            }
        }
    }

    /// Hands a renumbered interface's address to the lease loop, beside
    /// whatever a key rotation asked it to publish.
    fn publish_renumbered(&mut self, republish: &watch::Sender<Option<Published>>) {
        if let Some(new) = self.renumbered.take() {
            republish.send_modify(|held| {
                let mut p = held.clone().unwrap_or_default();
                p.public_ip = new.public_ip.or(p.public_ip);
                p.public_ipv6 = new.public_ipv6.or(p.public_ipv6);
                *held = Some(p);
            });
        }
    }

    /// `weft public-ip ADDR`: publishes `addr` as this node's address in
    /// its family, as a changed `--public-ip` would after a restart (a NAT
    /// mapping that moved). The family must be one the network uses.
    fn set_public_ip(
        &mut self,
        addr: std::net::IpAddr,
        republish: &watch::Sender<Option<Published>>,
    ) -> Result<String, String> {
        let mut new = Published::default();
        match addr {
            std::net::IpAddr::V4(v4) if self.cfg.enable_ipv4 => new.public_ip = Some(v4),
            std::net::IpAddr::V6(v6) if self.cfg.enable_ipv6 => new.public_ipv6 = Some(v6),
            _ => return Err(format!("the network does not use {addr}'s address family")),
        }
        if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
            return Err(format!("{addr} cannot be a node's address"));
        }
        tracing::warn!(%addr, "publishing a new public address on request (weft public-ip)");
        self.status.metrics().address_changed();
        self.renumbered = Some(new);
        self.publish_renumbered(republish);
        Ok(addr.to_string())
    }

    /// Whether this node runs the wireguard backend (and so can rotate).
    pub fn has_wireguard(&self) -> bool {
        self.wireguard.is_some()
    }

    /// Hands the rules (installed by the first pass) and the conflist to
    /// their keepers, each a task with its own timer.
    fn spawn_keepers(
        &mut self,
        lease_rx: &watch::Receiver<Option<Lease>>,
        shutdown: &Shutdown,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(rules) = self.rules.take() {
            let keeper = keepers::RulesKeeper {
                rules,
                policy: self.rules_policy.clone(),
                every: self.rules_resync,
                status: self.status.clone(),
            };
            tasks.push(tokio::spawn(keeper.run(lease_rx.clone(), shutdown.clone())));
        }
        if let Some(path) = self.cni_conf_file.clone() {
            let keeper = keepers::ConflistKeeper {
                path,
                every: RESYNC,
            };
            tasks.push(tokio::spawn(keeper.run(shutdown.clone())));
        }
        tasks
    }
}

/// Link events, or `None` with a warning saying what is lost meanwhile
/// (the resync tries again).
fn subscribe(nl: &Netlink) -> Option<weft_dataplane::netlink::LinkEvents> {
    match nl.link_events() {
        Ok(events) => Some(events),
        Err(e) => {
            tracing::warn!(
                "cannot subscribe to link events ({e}): a deleted device or an underlay change is \
                 seen at the next resync (every {}s) instead of at once; retrying then",
                RESYNC.as_secs()
            );
            None
        }
    }
}

async fn next_event(events: &mut Option<weft_dataplane::netlink::LinkEvents>) -> Option<LinkEvent> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
