//! What the dataplane keeps true between passes: the rules, subnet.env,
//! the CNI conflist, the underlay's MTU and addresses.

use anyhow::Result;
use ipnet::IpNet;
use weft_core::lease::Lease;
use weft_core::subnet_env::SubnetEnv;
use weft_dataplane::reconcile::Kernel;
use weft_dataplane::rules::{FamilyRules, RulesSpec};

use super::super::cni_conf::{self, Installed};
use super::super::subnet_file;
use super::Dataplane;

impl<K: Kernel> Dataplane<K> {
    pub(super) fn rules_spec(&self, lease: &Lease) -> RulesSpec {
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

    pub(super) fn write_subnet_env(&mut self, lease: &Lease, mtu: u32) -> Result<()> {
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

    pub(super) async fn check_rules(&self, lease: &Lease) {
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
    pub(super) fn repair_cni_conf(&self) {
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
    pub(super) async fn refresh_underlay(&mut self) -> bool {
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
}
