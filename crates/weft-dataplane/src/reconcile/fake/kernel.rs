//! [`FakeKernel`]'s answers to the reconciler: the [`Kernel`] trait over
//! the in-memory state of `mod.rs`.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use weft_core::Family;
use weft_core::mac::Mac;

use super::super::Kernel;
use super::{FakeKernel, link_exists, not_found, on_link, remove};
use crate::netlink::{
    AddrInfo, FdbInfo, IpipInfo, LinkInfo, LinkKind, NeighInfo, NeighState, NetlinkError,
    OperState, RouteInfo, RouteSpec, Scope, VxlanInfo, VxlanLinkSpec,
};

/// The kernel's default IPv6 route metric, which it always reports.
const IP6_DEFAULT_METRIC: u32 = 1024;

fn family_of(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

/// The route as the kernel would list it after `spec` was set.
fn listed(spec: &RouteSpec) -> RouteInfo {
    let metric = match spec.dst {
        IpNet::V4(_) => spec.metric,
        IpNet::V6(_) => Some(spec.metric.unwrap_or(IP6_DEFAULT_METRIC)),
    };
    RouteInfo {
        dst: spec.dst.trunc(),
        gateway: spec.gateway,
        oif: spec.oif,
        onlink: spec.onlink,
        protocol: spec.protocol,
        kind: spec.kind,
        scope: spec.scope,
        table: spec.table,
        prefsrc: None,
        metric,
    }
}

impl Kernel for FakeKernel {
    async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "links")?;
        Ok(s.links.values().cloned().collect())
    }

    async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "link_by_name")?;
        Ok(s.links.values().find(|l| l.name == name).cloned())
    }

    async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "link_by_index")?;
        Ok(s.links.get(&index).cloned())
    }

    async fn create_vxlan(&self, spec: &VxlanLinkSpec) -> Result<u32, NetlinkError> {
        let kind = LinkKind::Vxlan(VxlanInfo {
            vni: spec.vni,
            port: if spec.port == 0 { 8472 } else { spec.port },
            local: Some(spec.local),
            underlay_index: spec.underlay_index,
            learning: spec.learning,
            gbp: spec.gbp,
        });
        let mac = spec.mac.or(Some(Mac([0x02, 0, 0, 0, 0, 0x01])));
        self.create("create_vxlan", &spec.name, kind, spec.mtu, mac)
    }

    async fn create_ipip(
        &self,
        name: &str,
        local: Ipv4Addr,
        mtu: u32,
    ) -> Result<u32, NetlinkError> {
        let kind = LinkKind::Ipip(IpipInfo {
            local: Some(local),
            remote: None,
        });
        self.create("create_ipip", name, kind, mtu, None)
    }

    async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "delete_link")?;
        let Some(link) = s.links.remove(&index) else {
            return Err(not_found("delete_link"));
        };
        s.addresses.retain(|a| a.index != index);
        s.neighbours.retain(|n| n.index != index);
        s.fdb.retain(|f| f.index != index);
        s.routes.retain(|r| r.oif != Some(index));
        s.tx_checksum.remove(&link.name);
        s.changes.push(format!("delete_link {}", link.name));
        Ok(())
    }

    async fn set_link_up(&self, index: u32) -> Result<(), NetlinkError> {
        self.with_link("set_link_up", index, |l| {
            l.admin_up = true;
            l.oper_state = OperState::Unknown;
            format!("set_link_up {}", l.name)
        })
    }

    async fn set_link_down(&self, index: u32) -> Result<(), NetlinkError> {
        self.with_link("set_link_down", index, |l| {
            l.admin_up = false;
            l.oper_state = OperState::Down;
            format!("set_link_down {}", l.name)
        })
    }

    async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.with_link("set_link_mtu", index, |l| {
            l.mtu = mtu;
            format!("set_link_mtu {} {mtu}", l.name)
        })
    }

    async fn set_link_mac(&self, index: u32, mac: Mac) -> Result<(), NetlinkError> {
        self.with_link("set_link_mac", index, |l| {
            l.mac = Some(mac);
            format!("set_link_mac {} {mac}", l.name)
        })
    }

    async fn tx_checksum(&self, name: &str) -> Result<bool, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "tx_checksum")?;
        s.tx_checksum
            .get(name)
            .copied()
            .ok_or_else(|| not_found("tx_checksum"))
    }

    async fn set_tx_checksum(&self, name: &str, on: bool) -> Result<(), NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "set_tx_checksum")?;
        if !s.links.values().any(|l| l.name == name) {
            return Err(not_found("set_tx_checksum"));
        }
        s.tx_checksum.insert(name.to_owned(), on);
        s.changes.push(format!("set_tx_checksum {name} {on}"));
        Ok(())
    }

    fn quiet_ipv6(&self, _device: &str) {}

    async fn addresses(&self, index: u32) -> Result<Vec<AddrInfo>, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "addresses")?;
        Ok(on_link(&s.addresses, index))
    }

    async fn add_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "add_address")?;
        link_exists(&s, index, "add_address")?;
        if s.addresses
            .iter()
            .any(|a| a.index == index && a.prefix == addr)
        {
            return Err(NetlinkError::Exists {
                op: format!("add_address {addr}"),
            });
        }
        s.addresses.push(AddrInfo {
            index,
            prefix: addr,
            scope: Scope::Universe,
            permanent: true,
        });
        s.changes.push(format!("add_address {index} {addr}"));
        Ok(())
    }

    async fn del_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "del_address")?;
        remove(&mut s.addresses, "del_address", |a| {
            a.index == index && a.prefix == addr
        })?;
        s.changes.push(format!("del_address {index} {addr}"));
        Ok(())
    }

    async fn routes(&self, family: Family) -> Result<Vec<RouteInfo>, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "routes")?;
        Ok(s.routes
            .iter()
            .filter(|r| family_of(&r.dst) == family)
            .cloned()
            .collect())
    }

    async fn replace_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        self.batch("replace_routes", routes, |s, spec| {
            let new = listed(spec);
            s.routes
                .retain(|r| !(r.table == new.table && r.dst == new.dst && r.metric == new.metric));
            s.changes.push(format!("replace_route {}", new.dst));
            s.routes.push(new);
            Ok(())
        })
    }

    async fn delete_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        self.batch("delete_routes", routes, |s, spec| {
            let gone = listed(spec);
            remove(&mut s.routes, "delete_routes", |r| {
                r.table == gone.table
                    && r.dst == gone.dst
                    && r.metric == gone.metric
                    && (gone.gateway.is_none() || r.gateway == gone.gateway)
            })?;
            s.changes.push(format!("delete_route {}", gone.dst));
            Ok(())
        })
    }

    async fn neighbours(&self, index: u32) -> Result<Vec<NeighInfo>, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "neighbours")?;
        Ok(on_link(&s.neighbours, index))
    }

    async fn replace_neighbours(
        &self,
        index: u32,
        entries: &[(IpAddr, Mac)],
    ) -> Vec<Result<(), NetlinkError>> {
        self.batch("replace_neighbours", entries, |s, (ip, mac)| {
            link_exists(s, index, "replace_neighbours")?;
            s.neighbours.retain(|n| !(n.index == index && n.ip == *ip));
            s.neighbours.push(NeighInfo {
                index,
                ip: *ip,
                mac: Some(*mac),
                state: NeighState::Permanent,
            });
            s.changes.push(format!("replace_neighbour {ip} {mac}"));
            Ok(())
        })
    }

    async fn delete_neighbours(&self, index: u32, ips: &[IpAddr]) -> Vec<Result<(), NetlinkError>> {
        self.batch("delete_neighbours", ips, |s, ip| {
            remove(&mut s.neighbours, "delete_neighbours", |n| {
                n.index == index && n.ip == *ip
            })?;
            s.changes.push(format!("delete_neighbour {ip}"));
            Ok(())
        })
    }

    async fn fdb(&self, index: u32) -> Result<Vec<FdbInfo>, NetlinkError> {
        let mut s = self.state();
        Self::check(&mut s, "fdb")?;
        Ok(on_link(&s.fdb, index))
    }

    async fn replace_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> Vec<Result<(), NetlinkError>> {
        self.batch("replace_fdbs", entries, |s, (mac, dst)| {
            link_exists(s, index, "replace_fdbs")?;
            s.fdb.retain(|f| !(f.index == index && f.mac == *mac));
            s.fdb.push(FdbInfo {
                index,
                mac: *mac,
                dst: Some(*dst),
                is_self: true,
                permanent: true,
            });
            s.changes.push(format!("replace_fdb {mac} {dst}"));
            Ok(())
        })
    }

    async fn delete_fdbs(
        &self,
        index: u32,
        entries: &[(Mac, IpAddr)],
    ) -> Vec<Result<(), NetlinkError>> {
        self.batch("delete_fdbs", entries, |s, (mac, dst)| {
            remove(&mut s.fdb, "delete_fdbs", |f| {
                f.index == index && f.mac == *mac && f.dst == Some(*dst)
            })?;
            s.changes.push(format!("delete_fdb {mac} {dst}"));
            Ok(())
        })
    }
}
