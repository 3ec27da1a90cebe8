//! The reconcile passes: the first one after the lease (devices, rules,
//! subnet.env, then ready) and one per peer snapshot or trigger.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use weft_core::lease::Lease;
use weft_core::plan::{self, Desired, PlanInput};
use weft_dataplane::reconcile::{Kernel, NodeContext};
use weft_store::PeerSnapshot;

use super::super::cni_conf::{self, Installed};
use super::Dataplane;

impl<K: Kernel> Dataplane<K> {
    pub(super) fn plan(&self, lease: &Lease, peers: &[(String, Lease)]) -> Result<Desired> {
        plan::plan(&PlanInput {
            cfg: &self.cfg,
            own: &lease.subnets,
            underlay: &self.underlay,
            local: &self.local,
            peers,
            blackhole: self.blackhole,
            kernel_release: &self.kernel_release,
        })
        .context("cannot plan the dataplane")
    }

    pub(super) fn node(&self) -> NodeContext {
        NodeContext {
            underlay_index: self.underlay.index,
            cluster_networks: self.cfg.pools().map(|p| p.network).collect(),
        }
    }

    /// First pass after the lease: devices only (peers are unknown yet, and
    /// an empty peer list must not wipe routes a previous run programmed),
    /// rules, subnet.env; then the node is ready.
    pub(super) async fn start(&mut self, lease: &Lease) -> Result<()> {
        let desired = self.plan(lease, &[])?;
        if let Some(wg) = &mut self.wireguard {
            wg.ensure(self.reconciler.netlink(), &desired, false)
                .await?;
            self.status.set_wireguard(wg.path(), wg.views());
        }
        let devices_only = Desired {
            devices: desired.devices.clone(),
            ..Desired::default()
        };
        self.reconciler
            .ensure_devices(&devices_only)
            .await
            .context("cannot create the backend's devices")?;
        if let Some(rules) = &self.rules {
            if let Err(e) = rules.cleanup(rules.backend().other()).await {
                tracing::warn!("cannot remove the other rule backend's leftovers: {e}");
            }
            rules
                .apply(&self.rules_policy.spec(lease))
                .await
                .context("cannot install the masquerade/forward rules")?;
        }
        self.write_subnet_env(lease, desired.mtu)?;
        // Only now can the node serve pods: a runtime that finds the
        // conflist reports the node's network ready.
        if let Some(path) = &self.cni_conf_file {
            match cni_conf::install(path)? {
                Installed::Written => {
                    tracing::info!(path = %path.display(), "installed the CNI conflist");
                }
                Installed::Unchanged => {
                    tracing::info!(path = %path.display(), "the CNI conflist is already in place");
                }
            }
        }
        self.status.set_programmed(lease.subnets);
        tracing::info!("weft is ready");
        Ok(())
    }

    /// Programs the peers an early snapshot says just arrived (see
    /// `PeerSnapshot::arrived`) from a plan of those peers alone: a new
    /// lease's route, neighbour and FDB entry then go in at the same cost
    /// whatever the number of peers held, as flanneld adds one event's
    /// entries. Only where a peer's state is exactly those entries (vxlan,
    /// host-gw, ipip): a WireGuard peer or an ipsec tunnel waits for the
    /// full snapshot that follows, whose pass also covers any failure here
    /// (and counts what was added, as it re-applies the same entries).
    pub(super) async fn add_arrivals(&self, lease: &Lease, snapshot: &PeerSnapshot) {
        let Some(applied) = &self.applied else {
            return;
        };
        if snapshot.arrived.is_empty() || self.wireguard.is_some() || self.ipsec.is_some() {
            return;
        }
        let Ok(newcomers) = self.plan(lease, &snapshot.arrived) else {
            return;
        };
        let before = Desired {
            mtu: applied.mtu,
            devices: applied.devices.clone(),
            ..Desired::default()
        };
        match self
            .reconciler
            .apply_additions(&before, &newcomers, &self.node())
            .await
        {
            Ok(report) => {
                tracing::debug!(peers = snapshot.arrived.len(), "new peers first: {report}")
            }
            Err(e) => tracing::debug!("new peers first: {e}; the full pass adds them"),
        }
    }

    /// One pass over a snapshot. An early one only adds its newcomers: its
    /// peer list is its predecessor's, and the full snapshot follows.
    pub(super) async fn pass(&mut self, lease: &Lease, snapshot: &Arc<PeerSnapshot>) -> Result<()> {
        if snapshot.is_early() {
            self.add_arrivals(lease, snapshot).await;
            return Ok(());
        }
        let desired = self.plan(lease, &snapshot.peers.accepted)?;
        let peers_changed = super::super::peer_log::log(&self.peer_log.observe(snapshot));
        for (id, why) in &desired.skipped {
            tracing::debug!(peer = %id, "not programmed: {why}");
        }
        let started = std::time::Instant::now();
        if let Some(wg) = &mut self.wireguard {
            wg.ensure(self.reconciler.netlink(), &desired, true).await?;
        }
        let early = match &self.applied {
            Some(previous) => self
                .reconciler
                .apply_additions(previous, &desired, &self.node())
                .await
                .unwrap_or_else(|e| {
                    tracing::debug!("new entries first: {e}; the full pass does it all");
                    Default::default()
                }),
            None => Default::default(),
        };
        let mut report = match self.reconciler.apply(&desired, &self.node()).await {
            Ok(r) => r,
            Err(e) => {
                self.applied = None;
                self.status.metrics().observe_pass(started.elapsed(), None);
                return Err(e.into());
            }
        };
        report.add_counts(&early);
        self.status
            .metrics()
            .observe_pass(started.elapsed(), Some(&report));
        if let Some(wg) = &mut self.wireguard {
            wg.greet_fresh(&desired);
            wg.open_sessions().await;
        }
        if let Some(ipsec) = &mut self.ipsec
            && let Err(e) = ipsec.ensure(&desired)
        {
            // The rest of the node (subnet.env, readiness) does not wait
            // for IKE; the next pass tries again.
            tracing::warn!("{}", crate::logging::chain(&e));
        }
        let mtu = desired.mtu;
        let desired = Arc::new(desired);
        self.applied = Some(Arc::clone(&desired));
        self.status.set_desired(desired, &self.underlay.name);
        // The peer lines above say why the kernel changed; kernel changes
        // with no peer change are drift weft put right, worth a line.
        if report.changes() > 0 && !peers_changed {
            tracing::info!(took = ?started.elapsed(), "repaired kernel state: {report}");
        } else if report.changes() > 0 || !report.errors.is_empty() {
            tracing::debug!(took = ?started.elapsed(), peers = snapshot.peers.accepted.len(), "reconciled: {report}");
        }
        for e in &report.errors {
            tracing::warn!("reconcile: {e}");
        }
        self.write_subnet_env(lease, mtu)?;
        self.status.set_programmed(lease.subnets);
        self.trimmer
            .after_pass(snapshot.peers.accepted.len(), report.changes() as usize);
        Ok(())
    }
}
