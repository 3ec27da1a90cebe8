//! The dataplane task: turns the lease and each peer snapshot into kernel
//! state (through the planner and the reconciler), writes subnet.env, keeps
//! the masquerade/forward rules in place, and repairs what is changed under
//! it (a deleted device, a flushed chain) on link events and resyncs.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use ipnet::IpNet;
use tokio::sync::watch;
use weft_core::Family;
use weft_core::backend_data::VxlanData;
use weft_core::lease::{Lease, LeaseAttrs};
use weft_core::mac::Mac;
use weft_core::netconf::{BackendConfig, NetConfig};
use weft_core::plan::{self, Desired, LocalIdentity, PlanInput, Underlay};
use weft_core::subnet_env::SubnetEnv;
use weft_dataplane::netlink::{LinkEvent, Netlink};
use weft_dataplane::reconcile::{NodeContext, Reconciler, is_weft_device_name};
use weft_dataplane::rules::{FamilyRules, Rules, RulesBackend, RulesSpec};
use weft_store::PeerSnapshot;

use super::cni_conf::{self, Installed};
use super::shutdown::Shutdown;
use super::status::StatusHandle;
use super::subnet_file;
use super::wireguard::WireguardState;
use crate::flags::Flags;
use weft_dataplane::external::ExternalInterface;

/// How often the kernel state is re-read and repaired without a trigger
/// (flannel's host-gw route check runs every 10 s).
const RESYNC: Duration = Duration::from_secs(10);

pub struct Dataplane {
    reconciler: Reconciler,
    cfg: NetConfig,
    underlay: Underlay,
    local: LocalIdentity,
    blackhole: bool,
    rules: Option<Rules>,
    masquerade: bool,
    forward: bool,
    fully_random: bool,
    rules_resync: Duration,
    subnet_file: PathBuf,
    /// `--cni-conf-file`: where the conflist goes once subnet.env is written.
    cni_conf_file: Option<PathBuf>,
    ip_masq: bool,
    status: StatusHandle,
    written: Option<SubnetEnv>,
    wireguard: Option<WireguardState>,
    /// The plan the last successful full pass applied: what a new plan
    /// adds to it goes in first, without reading the kernel (see
    /// `Reconciler::apply_additions`).
    applied: Option<Arc<Desired>>,
    peer_log: super::peer_log::PeerLog,
}

async fn underlay_of(nl: &Netlink, ext: &ExternalInterface) -> Result<Underlay> {
    let addrs = nl.addresses(ext.index).await?;
    let link = nl
        .link_by_index(ext.index)
        .await?
        .with_context(|| format!("the external interface {} disappeared", ext.name))?;
    Ok(Underlay {
        index: ext.index,
        name: link.name,
        mtu: link.mtu,
        addr_v4: ext.iface_addr,
        addr_v6: ext.iface_addr_v6,
        connected: addrs.iter().map(|a| a.prefix.trunc()).collect(),
    })
}

/// The VTEP MAC of a vxlan device: the one the device already has (a
/// restart keeps it, so peers' entries stay valid), else the one our lease
/// published last time (a reboot removed the device; flannel #1795), else
/// one derived from our public IP and the device name (stable too).
async fn vtep_mac(
    nl: &Netlink,
    device: &str,
    public: IpAddr,
    published: Option<&weft_core::lease::RawJson>,
) -> Result<Mac> {
    if let Some(link) = nl.link_by_name(device).await?
        && let Some(mac) = link.mac
        && link.vxlan().is_some()
        && mac.is_valid_unicast()
    {
        return Ok(mac);
    }
    if let Ok(data) = VxlanData::decode(published) {
        return Ok(data.vtep_mac);
    }
    Ok(Mac::derived(format!("{public}/{device}").as_bytes()))
}

impl Dataplane {
    /// Sets the dataplane up and says what this node publishes (public IPs,
    /// backend type and data).
    pub async fn prepare(
        flags: &Flags,
        cfg: &NetConfig,
        ext: &ExternalInterface,
        previous: Option<&LeaseAttrs>,
        status: StatusHandle,
    ) -> Result<(Dataplane, LeaseAttrs)> {
        let nl = Netlink::connect().context("cannot open netlink")?;
        let underlay = underlay_of(&nl, ext).await?;
        let mut attrs = LeaseAttrs {
            public_ip: ext.ext_addr,
            public_ipv6: ext.ext_addr_v6,
            backend_type: cfg.backend.type_name().to_owned(),
            ..Default::default()
        };
        let mut local = LocalIdentity::default();
        let mut wireguard = None;
        match &cfg.backend {
            BackendConfig::Vxlan(opts) => {
                for family in Family::ALL {
                    let (Some(_), Some(public)) = (cfg.pool(family), public_of(ext, family)) else {
                        continue;
                    };
                    let device = plan::vxlan_device_name(family, opts.vni);
                    let published = previous.and_then(|p| p.backend_data_for(family));
                    let mac = vtep_mac(&nl, &device, public, published).await?;
                    let data = VxlanData {
                        vni: opts.vni,
                        vtep_mac: mac,
                    }
                    .encode();
                    match family {
                        Family::V4 => {
                            local.vtep_mac_v4 = Some(mac);
                            attrs.backend_data = Some(data);
                        }
                        Family::V6 => {
                            local.vtep_mac_v6 = Some(mac);
                            attrs.backend_v6_data = Some(data);
                        }
                    }
                }
            }
            BackendConfig::HostGw => {
                if ext.ext_addr.is_some() && ext.ext_addr != ext.iface_addr
                    || ext.ext_addr_v6.is_some() && ext.ext_addr_v6 != ext.iface_addr_v6
                {
                    bail!(
                        "your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend"
                    );
                }
            }
            BackendConfig::Wireguard(opts) => {
                let policy = flags
                    .wireguard_path
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!(e))?;
                let state = WireguardState::prepare(cfg, opts, policy, &mut attrs)?;
                status.set_wireguard(None, state.views());
                wireguard = Some(state);
            }
            BackendConfig::Ipip(_) | BackendConfig::None => {}
            // `run_with` refuses it before leasing (unbuilt::check_backend);
            // this arm only keeps the match exhaustive without a panic.
            BackendConfig::Ipsec(_) => {
                return Err(crate::unbuilt::backend_not_built(cfg.backend.config_type()).into());
            }
        }
        let rules = (flags.ip_masq || flags.iptables_forward_rules).then(|| {
            Rules::new(if cfg.enable_nftables {
                RulesBackend::Nftables
            } else {
                RulesBackend::Iptables
            })
        });
        Ok((
            Dataplane {
                reconciler: Reconciler::new(nl),
                cfg: cfg.clone(),
                underlay,
                local,
                blackhole: flags.ip_blackhole_route,
                rules,
                masquerade: flags.ip_masq,
                forward: flags.iptables_forward_rules,
                fully_random: !flags.ip_masq_fully_random_disable,
                rules_resync: Duration::from_secs(flags.iptables_resync_secs.max(1)),
                subnet_file: flags.subnet_file.clone(),
                cni_conf_file: flags.cni_conf_file.clone(),
                ip_masq: flags.ip_masq,
                status,
                written: None,
                wireguard,
                applied: None,
                peer_log: Default::default(),
            },
            attrs,
        ))
    }

    fn plan(&self, lease: &Lease, peers: &[(String, Lease)]) -> Result<Desired> {
        plan::plan(&PlanInput {
            cfg: &self.cfg,
            own: &lease.subnets,
            underlay: &self.underlay,
            local: &self.local,
            peers,
            blackhole: self.blackhole,
        })
        .context("cannot plan the dataplane")
    }

    fn node(&self) -> NodeContext {
        NodeContext {
            underlay_index: self.underlay.index,
            cluster_networks: self.cfg.pools().map(|p| p.network).collect(),
        }
    }

    fn rules_spec(&self, lease: &Lease) -> RulesSpec {
        RulesSpec {
            families: self
                .cfg
                .pools()
                .filter_map(|p| {
                    let sn = lease.subnets.get(p.family())?;
                    Some(FamilyRules::new(p.network, sn))
                })
                .collect(),
            masquerade: self.masquerade,
            fully_random: self.fully_random,
            forward: self.forward,
        }
    }

    fn write_subnet_env(&mut self, lease: &Lease, mtu: u32) -> Result<()> {
        let env = SubnetEnv {
            networks: self
                .cfg
                .ipv4
                .iter()
                .filter_map(|p| weft_core::prefix::as_v4(p.network))
                .collect(),
            subnet: lease.subnets.v4,
            ipv6_networks: self
                .cfg
                .ipv6
                .iter()
                .filter_map(|p| weft_core::prefix::as_v6(p.network))
                .collect(),
            ipv6_subnet: lease.subnets.v6,
            mtu: Some(mtu),
            ipmasq: Some(self.ip_masq),
        };
        if self.written.as_ref() != Some(&env) {
            subnet_file::write(&self.subnet_file, &env)?;
            tracing::info!(path = %self.subnet_file.display(), mtu, "wrote the subnet file");
            self.written = Some(env);
        }
        Ok(())
    }

    /// First pass after the lease: devices only (peers are unknown yet, and
    /// an empty peer list must not wipe routes a previous run programmed),
    /// rules, subnet.env; then the node is ready.
    async fn start(&mut self, lease: &Lease) -> Result<()> {
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
                .apply(&self.rules_spec(lease))
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
        self.status.set_ready(true);
        tracing::info!("weft is ready");
        Ok(())
    }

    async fn pass(&mut self, lease: &Lease, snapshot: &Arc<PeerSnapshot>) -> Result<()> {
        let desired = self.plan(lease, &snapshot.peers.accepted)?;
        let peers_changed = super::peer_log::log(&self.peer_log.observe(snapshot));
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
        Ok(())
    }

    async fn check_rules(&self, lease: &Lease) {
        let Some(rules) = &self.rules else { return };
        let spec = self.rules_spec(lease);
        match rules.check(&spec).await {
            Ok(drift) if drift.is_clean() => {}
            Ok(drift) => {
                tracing::warn!("Some rules are missing or changed ({drift}); restoring them");
                self.status.metrics().rules_repaired();
                if let Err(e) = rules.apply(&spec).await {
                    tracing::error!("cannot restore the rules: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot check the rules: {e}"),
        }
    }

    /// Puts the conflist back if someone deleted or changed it (a node
    /// without it gets no pods); an identical file is not touched.
    fn repair_cni_conf(&self) {
        let Some(path) = &self.cni_conf_file else {
            return;
        };
        match cni_conf::install(path) {
            Ok(Installed::Unchanged) => {}
            Ok(Installed::Written) => {
                tracing::warn!(path = %path.display(), "the CNI conflist was missing or changed; put it back");
            }
            Err(e) => tracing::error!("{e:#}"),
        }
    }

    /// Re-reads the underlay (its MTU may have changed); true if it did.
    async fn refresh_underlay(&mut self) -> bool {
        let Ok(Some(link)) = self
            .reconciler
            .netlink()
            .link_by_index(self.underlay.index)
            .await
        else {
            return false;
        };
        let mut changed = false;
        if link.mtu != self.underlay.mtu {
            tracing::info!(
                from = self.underlay.mtu,
                to = link.mtu,
                "the external interface's MTU changed"
            );
            self.underlay.mtu = link.mtu;
            changed = true;
        }
        if let Ok(addrs) = self
            .reconciler
            .netlink()
            .addresses(self.underlay.index)
            .await
        {
            let connected: Vec<IpNet> = addrs.iter().map(|a| a.prefix.trunc()).collect();
            if connected != self.underlay.connected {
                self.underlay.connected = connected;
                changed = true;
            }
        }
        changed
    }

    pub async fn run(
        mut self,
        mut lease_rx: watch::Receiver<Option<Lease>>,
        mut snap_rx: watch::Receiver<Option<Arc<PeerSnapshot>>>,
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
        let mut events = self.reconciler.netlink().link_events().ok();
        let mut resync = tokio::time::interval(RESYNC);
        let mut rules_tick = tokio::time::interval(self.rules_resync);
        // WireGuard handshakes and counters move on their own: read them
        // often enough for `weft status` and the metrics to be current.
        let mut wg_tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let mut check_rules = false;
            let mut dirty = false;
            tokio::select! {
                _ = shutdown.requested() => break,
                r = lease_rx.changed() => {
                    if r.is_err() { break; }
                    if let Some(l) = lease_rx.borrow_and_update().clone() {
                        lease = l;
                        check_rules = true;
                        dirty = true;
                    }
                }
                r = snap_rx.changed() => {
                    if r.is_err() { break; }
                    dirty = true;
                }
                _ = resync.tick() => {
                    self.repair_cni_conf();
                    self.refresh_underlay().await;
                    dirty = true;
                }
                _ = rules_tick.tick() => check_rules = true,
                _ = wg_tick.tick(), if self.wireguard.is_some() => {
                    if let Some(wg) = &self.wireguard {
                        wg.open_sessions().await;
                        wg.refresh_views(self.status.metrics()).await;
                        self.status.set_wireguard(wg.path(), wg.views());
                    }
                }
                ev = next_event(&mut events) => match ev {
                    Some(LinkEvent::Deleted { name, .. }) if is_weft_device_name(&name) => {
                        tracing::warn!(device = %name, "our device was deleted; recreating it and every peer entry");
                        dirty = true;
                    }
                    Some(LinkEvent::New { index, .. }) if index == self.underlay.index => {
                        dirty = self.refresh_underlay().await;
                    }
                    Some(LinkEvent::Lost) => {
                        tracing::warn!("link events were dropped by the kernel; resyncing");
                        dirty = true;
                    }
                    Some(_) => {}
                    None => {
                        tracing::warn!("link events were lost; resubscribing and resyncing");
                        events = self.reconciler.netlink().link_events().ok();
                        dirty = true;
                    }
                },
            }
            if check_rules {
                self.check_rules(&lease).await;
            }
            if !dirty {
                continue;
            }
            let snapshot = snap_rx.borrow_and_update().clone();
            let Some(snapshot) = snapshot else { continue };
            if let Err(e) = self.pass(&lease, &snapshot).await {
                tracing::error!("reconcile pass failed: {e:#}; retrying at the next resync");
            }
        }
        if let Some(wg) = self.wireguard.take() {
            wg.close().await;
        }
        Ok(())
    }
}

fn public_of(ext: &ExternalInterface, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => ext.ext_addr.map(IpAddr::V4),
        Family::V6 => ext.ext_addr_v6.map(IpAddr::V6),
    }
}

async fn next_event(events: &mut Option<weft_dataplane::netlink::LinkEvents>) -> Option<LinkEvent> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
