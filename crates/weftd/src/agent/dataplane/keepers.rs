//! The dataplane's keepers: each owns one thing the node must keep true
//! and the timer it checks it on, in a task of its own, so that a slow
//! check (iptables-save on a busy node) never delays a reconcile pass and
//! the pass loop carries only what passes depend on.
//!
//! - [`RulesKeeper`]: the masquerade and forward rules, checked every
//!   `--iptables-resync` seconds and whenever the lease changes, and put
//!   back when something removed or changed them (flannel #2237: a restart
//!   never flushes them, a tamper never lasts).
//! - [`ConflistKeeper`]: the CNI conflist (`--cni-conf-file`), put back
//!   when deleted or changed: a node without it gets no pods.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weft_core::lease::Lease;
use weft_core::netconf::NetConfig;
use weft_dataplane::rules::{FamilyRules, Rules, RulesSpec};

use super::super::cni_conf::{self, Installed};
use super::super::shutdown::Shutdown;
use super::super::status::StatusHandle;

/// What rules this node wants, given its lease.
#[derive(Debug, Clone)]
pub struct RulesPolicy {
    pub cfg: Arc<NetConfig>,
    pub masquerade: bool,
    pub forward: bool,
    pub fully_random: bool,
}

impl RulesPolicy {
    pub fn spec(&self, lease: &Lease) -> RulesSpec {
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
}

pub struct RulesKeeper {
    pub rules: Rules,
    pub policy: RulesPolicy,
    pub every: Duration,
    pub status: StatusHandle,
}

impl RulesKeeper {
    /// Checks (and repairs) on every tick and lease change, until
    /// shutdown. The first tick is one period in: the first pass has just
    /// installed the rules, and a check now would only compete with the
    /// node's first peer pass for the CPU (four `iptables-save` runs).
    pub async fn run(self, mut lease_rx: watch::Receiver<Option<Lease>>, shutdown: Shutdown) {
        let first = tokio::time::Instant::now() + self.every;
        let mut tick = tokio::time::interval_at(first, self.every);
        loop {
            tokio::select! {
                _ = shutdown.requested() => return,
                _ = tick.tick() => {}
                r = lease_rx.changed() => if r.is_err() { return },
            }
            let lease = lease_rx.borrow_and_update().clone();
            if let Some(lease) = lease {
                self.check(&lease).await;
            }
        }
    }

    async fn check(&self, lease: &Lease) {
        let spec = self.policy.spec(lease);
        match self.rules.check(&spec).await {
            Ok(drift) if drift.is_clean() => {}
            Ok(drift) => {
                tracing::warn!("Some rules are missing or changed ({drift}); restoring them");
                self.status.metrics().rules_repaired();
                if let Err(e) = self.rules.apply(&spec).await {
                    tracing::error!("cannot restore the rules: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot check the rules: {e}"),
        }
    }
}

pub struct ConflistKeeper {
    pub path: PathBuf,
    pub every: Duration,
}

impl ConflistKeeper {
    /// Puts the conflist back on every tick until shutdown; an identical
    /// file is never touched.
    pub async fn run(self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = shutdown.requested() => return,
                _ = tick.tick() => {}
            }
            match cni_conf::install(&self.path) {
                Ok(Installed::Unchanged) => {}
                Ok(Installed::Written) => {
                    tracing::warn!(path = %self.path.display(), "the CNI conflist was missing or changed; put it back");
                }
                Err(e) => tracing::error!("{e:#}"),
            }
        }
    }
}
