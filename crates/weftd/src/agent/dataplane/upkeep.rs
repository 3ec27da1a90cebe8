//! What the pass loop keeps true between passes: subnet.env, the
//! underlay's MTU and addresses. (The rules and the CNI conflist have
//! keepers of their own: `keepers.rs`.)

use anyhow::Result;
use ipnet::IpNet;
use weft_core::lease::Lease;
use weft_core::subnet_env::SubnetEnv;
use weft_dataplane::reconcile::Kernel;

use super::super::subnet_file;
use super::super::wg_rotation::Published;
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
            changed |= self.follow_addresses(&addrs);
        }
        changed
    }

    /// Notices that the external interface was renumbered (DHCP, a moved
    /// address): the tunnels' local address follows it at the next pass,
    /// and where the lease's public address is the interface's (no
    /// `--public-ip`), the lease is asked to publish the new one, without a
    /// restart. An interface left with no address keeps the old ones: a
    /// renumbering adds the new address before it removes the old one, or
    /// the next read sees the new one.
    fn follow_addresses(&mut self, addrs: &[weft_dataplane::netlink::AddrInfo]) -> bool {
        let (v4, v6) = weft_dataplane::external::interface_addresses(addrs);
        let mut new = Published::default();
        let mut changed = false;
        if let Some(v4) = v4.filter(|a| self.underlay.addr_v4.is_some_and(|old| old != *a)) {
            tracing::warn!(interface = %self.underlay.name, from = ?self.underlay.addr_v4, to = %v4, "the external interface's address changed; following it");
            self.underlay.addr_v4 = Some(v4);
            if self.follows_interface.v4 {
                new.public_ip = Some(v4);
            }
            changed = true;
        }
        if let Some(v6) = v6.filter(|a| self.underlay.addr_v6.is_some_and(|old| old != *a)) {
            tracing::warn!(interface = %self.underlay.name, from = ?self.underlay.addr_v6, to = %v6, "the external interface's IPv6 address changed; following it");
            self.underlay.addr_v6 = Some(v6);
            if self.follows_interface.v6 {
                new.public_ipv6 = Some(v6);
            }
            changed = true;
        }
        if changed {
            self.status.metrics().address_changed();
        }
        if new != Published::default() {
            self.renumbered = Some(new);
        }
        changed
    }
}
