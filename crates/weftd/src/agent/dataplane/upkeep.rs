//! What the pass loop keeps true between passes: subnet.env, the
//! underlay's MTU and addresses. (The rules and the CNI conflist have
//! keepers of their own: `keepers.rs`.)

use anyhow::Result;
use ipnet::IpNet;
use weft_core::lease::Lease;
use weft_core::subnet_env::SubnetEnv;
use weft_dataplane::reconcile::Kernel;

use super::super::subnet_file;
use super::Dataplane;

impl<K: Kernel> Dataplane<K> {
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
