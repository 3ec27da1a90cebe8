//! What the reconciler needs of the kernel, as a trait: [`Netlink`] is the
//! real thing; [`FakeKernel`](super::FakeKernel) (feature `fake-kernel`,
//! and in this crate's unit tests) keeps the same state in memory.
//!
//! Why a seam: the reconciler's rules — what it owns, what it adopts from
//! flannel, what it repairs and removes — are the agent's most important
//! decisions, and without it they could only be tested in a root network
//! namespace. The trait is exactly the reconciler's vocabulary (links,
//! addresses, routes, neighbours, FDB entries, the TX checksum feature),
//! and nothing of the socket behind it.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use weft_core::Family;
use weft_core::mac::Mac;

use crate::netlink::{
    AddrInfo, FdbInfo, LinkInfo, NeighInfo, Netlink, NetlinkError, RouteInfo, RouteSpec,
    VxlanLinkSpec,
};

/// The kernel objects a reconcile pass reads and changes. Batch methods
/// return one result per item, in order; the others fail as a whole.
pub trait Kernel: Send + Sync {
    fn links(&self) -> impl Future<Output = Result<Vec<LinkInfo>, NetlinkError>> + Send;
    fn link_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<LinkInfo>, NetlinkError>> + Send;
    fn link_by_index(
        &self,
        index: u32,
    ) -> impl Future<Output = Result<Option<LinkInfo>, NetlinkError>> + Send;
    fn create_vxlan(
        &self,
        spec: &VxlanLinkSpec,
    ) -> impl Future<Output = Result<u32, NetlinkError>> + Send;
    fn create_ipip(
        &self,
        name: &str,
        local: Ipv4Addr,
        mtu: u32,
    ) -> impl Future<Output = Result<u32, NetlinkError>> + Send;
    fn delete_link(&self, index: u32) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    fn set_link_up(&self, index: u32) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    fn set_link_down(&self, index: u32) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    fn set_link_mtu(
        &self,
        index: u32,
        mtu: u32,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    fn set_link_mac(
        &self,
        index: u32,
        mac: Mac,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    fn tx_checksum(&self, name: &str) -> impl Future<Output = Result<bool, NetlinkError>> + Send;
    fn set_tx_checksum(
        &self,
        name: &str,
        on: bool,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    /// No router advertisements and no duplicate address detection on an
    /// IPv6-carrying device of ours (flannel sets `accept_ra=0`): its
    /// address is unique by lease, and DAD would hold it "tentative" for a
    /// second after every (re)creation. Best effort: failures are logged.
    fn quiet_ipv6(&self, device: &str);
    fn addresses(
        &self,
        index: u32,
    ) -> impl Future<Output = Result<Vec<AddrInfo>, NetlinkError>> + Send;
    fn add_address(
        &self,
        index: u32,
        addr: IpNet,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    fn del_address(
        &self,
        index: u32,
        addr: IpNet,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
    fn routes(
        &self,
        family: Family,
    ) -> impl Future<Output = Result<Vec<RouteInfo>, NetlinkError>> + Send;
    fn replace_routes(
        &self,
        routes: &[RouteSpec],
    ) -> impl Future<Output = Vec<Result<(), NetlinkError>>> + Send;
    fn delete_routes(
        &self,
        routes: &[RouteSpec],
    ) -> impl Future<Output = Vec<Result<(), NetlinkError>>> + Send;
    fn neighbours(
        &self,
        index: u32,
    ) -> impl Future<Output = Result<Vec<NeighInfo>, NetlinkError>> + Send;
    fn replace_neighbours(
        &self,
        index: u32,
        entries: &[(IpAddr, Mac)],
    ) -> impl Future<Output = Vec<Result<(), NetlinkError>>> + Send;
    fn delete_neighbours(
        &self,
        index: u32,
        ips: &[IpAddr],
    ) -> impl Future<Output = Vec<Result<(), NetlinkError>>> + Send;
    fn fdb(&self, index: u32) -> impl Future<Output = Result<Vec<FdbInfo>, NetlinkError>> + Send;
    fn replace_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> impl Future<Output = Vec<Result<(), NetlinkError>>> + Send;
    fn delete_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> impl Future<Output = Vec<Result<(), NetlinkError>>> + Send;
}

impl Kernel for Netlink {
    async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        Netlink::links(self).await
    }
    async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        Netlink::link_by_name(self, name).await
    }
    async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        Netlink::link_by_index(self, index).await
    }
    async fn create_vxlan(&self, spec: &VxlanLinkSpec) -> Result<u32, NetlinkError> {
        Netlink::create_vxlan(self, spec).await
    }
    async fn create_ipip(
        &self,
        name: &str,
        local: Ipv4Addr,
        mtu: u32,
    ) -> Result<u32, NetlinkError> {
        Netlink::create_ipip(self, name, local, mtu).await
    }
    async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        Netlink::delete_link(self, index).await
    }
    async fn set_link_up(&self, index: u32) -> Result<(), NetlinkError> {
        Netlink::set_link_up(self, index).await
    }
    async fn set_link_down(&self, index: u32) -> Result<(), NetlinkError> {
        Netlink::set_link_down(self, index).await
    }
    async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        Netlink::set_link_mtu(self, index, mtu).await
    }
    async fn set_link_mac(&self, index: u32, mac: Mac) -> Result<(), NetlinkError> {
        Netlink::set_link_mac(self, index, mac).await
    }
    async fn tx_checksum(&self, name: &str) -> Result<bool, NetlinkError> {
        Netlink::tx_checksum(self, name).await
    }
    async fn set_tx_checksum(&self, name: &str, on: bool) -> Result<(), NetlinkError> {
        Netlink::set_tx_checksum(self, name, on).await
    }
    fn quiet_ipv6(&self, device: &str) {
        // Per-namespace sysctls of this thread's namespace (the one the
        // connection was opened in), written only when they differ.
        for key in ["accept_ra", "accept_dad"] {
            let path = format!("/proc/sys/net/ipv6/conf/{device}/{key}");
            let Ok(value) = std::fs::read_to_string(&path) else {
                continue;
            };
            if ipv6_sysctl_is_off(key, value.trim()) {
                continue;
            }
            if let Err(e) = std::fs::write(&path, "0") {
                // Under a container runtime /proc/sys is read-only: say so
                // once per device and setting, not on every pass.
                if sysctl_refusal_is_new(device, key) {
                    tracing::warn!(device, key, error = %e, "cannot set an IPv6 sysctl of our device");
                } else {
                    tracing::debug!(device, key, error = %e, "cannot set an IPv6 sysctl of our device");
                }
            }
        }
    }
    async fn addresses(&self, index: u32) -> Result<Vec<AddrInfo>, NetlinkError> {
        Netlink::addresses(self, index).await
    }
    async fn add_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        Netlink::add_address(self, index, addr).await
    }
    async fn del_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        Netlink::del_address(self, index, addr).await
    }
    async fn routes(&self, family: Family) -> Result<Vec<RouteInfo>, NetlinkError> {
        Netlink::routes(self, family).await
    }
    async fn replace_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        Netlink::replace_routes(self, routes).await
    }
    async fn delete_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        Netlink::delete_routes(self, routes).await
    }
    async fn neighbours(&self, index: u32) -> Result<Vec<NeighInfo>, NetlinkError> {
        Netlink::neighbours(self, index).await
    }
    async fn replace_neighbours(
        &self,
        index: u32,
        entries: &[(IpAddr, Mac)],
    ) -> Vec<Result<(), NetlinkError>> {
        Netlink::replace_neighbours(self, index, entries).await
    }
    async fn delete_neighbours(&self, index: u32, ips: &[IpAddr]) -> Vec<Result<(), NetlinkError>> {
        Netlink::delete_neighbours(self, index, ips).await
    }
    async fn fdb(&self, index: u32) -> Result<Vec<FdbInfo>, NetlinkError> {
        Netlink::fdb(self, index).await
    }
    async fn replace_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> Vec<Result<(), NetlinkError>> {
        Netlink::replace_fdbs(self, index, entries).await
    }
    async fn delete_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> Vec<Result<(), NetlinkError>> {
        Netlink::delete_fdbs(self, index, entries).await
    }
}

/// Whether an IPv6 setting of our device already does what `quiet_ipv6`
/// wants: no router advertisements, no duplicate address detection. The
/// kernel shows DAD as -1 on devices where it does not apply (a tun).
fn ipv6_sysctl_is_off(key: &str, value: &str) -> bool {
    match key {
        "accept_dad" => value.parse::<i32>().is_ok_and(|v| v <= 0),
        _ => value == "0",
    }
}

/// True the first time this device's setting could not be written.
fn sysctl_refusal_is_new(device: &str, key: &'static str) -> bool {
    static SEEN: std::sync::Mutex<std::collections::BTreeSet<(String, &str)>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    SEEN.lock()
        .map(|mut seen| seen.insert((device.to_owned(), key)))
        .unwrap_or(true)
}

#[cfg(test)]
mod sysctl_tests {
    use super::*;

    #[test]
    fn dad_not_applicable_counts_as_off_and_refusals_warn_once() {
        assert!(ipv6_sysctl_is_off("accept_dad", "-1"));
        assert!(ipv6_sysctl_is_off("accept_dad", "0"));
        assert!(!ipv6_sysctl_is_off("accept_dad", "1"));
        assert!(ipv6_sysctl_is_off("accept_ra", "0"));
        assert!(!ipv6_sysctl_is_off("accept_ra", "1"));
        assert!(!ipv6_sysctl_is_off("accept_ra", "-1"));
        assert!(sysctl_refusal_is_new("test-dev0", "accept_ra"));
        assert!(!sysctl_refusal_is_new("test-dev0", "accept_ra"));
        assert!(sysctl_refusal_is_new("test-dev0", "accept_dad"));
    }
}
