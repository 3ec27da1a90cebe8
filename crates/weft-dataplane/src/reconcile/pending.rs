//! What a pass would change, computed without changing anything: the drift
//! `weft status` reports, by the very rules a pass applies (ownership,
//! protocol, scope, permanence), so the two can never disagree about what
//! is "in sync".

use std::collections::HashMap;

use ipnet::IpNet;
use weft_core::plan::{Desired, DeviceSpec, FdbPlan, NeighPlan, RoutePlan};

use super::entries::{self, EntryChanges};
use super::routes::{self, RouteChanges, RouteContext};

use super::{Kernel, NodeContext, Reconciler, devices};
use crate::netlink::{NetlinkError, Scope};

/// One desired device that a pass would create or change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceDrift {
    Missing,
    /// Present with parameters that cannot change in place.
    Incompatible,
    Mtu {
        have: u32,
        want: u32,
    },
    Down,
    AddressMissing(IpNet),
    AddressStray(IpNet),
}

/// Everything a pass would do.
#[derive(Debug, Default)]
pub struct Pending {
    pub devices: Vec<(String, DeviceDrift)>,
    pub routes: RouteChanges,
    /// Per vxlan device, by name.
    pub entries: Vec<(String, EntryChanges)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.routes.set.is_empty()
            && self.routes.delete.is_empty()
            && self.routes.missing_device.is_empty()
            && self.entries.iter().all(|(_, c)| c.is_empty())
    }
}

/// The routes and entries of a desired state, with its devices by name
/// only: what `weft status` can rebuild from the agent's status view.
pub struct DesiredEntries<'a> {
    /// Each device's name, and whether it holds neighbour and FDB entries
    /// (vxlan).
    pub devices: Vec<(&'a str, bool)>,
    pub routes: &'a [RoutePlan],
    pub neighbours: &'a [NeighPlan],
    pub fdb: &'a [FdbPlan],
}

impl<'a> From<&'a Desired> for DesiredEntries<'a> {
    fn from(d: &'a Desired) -> DesiredEntries<'a> {
        DesiredEntries {
            devices: d
                .devices
                .iter()
                .map(|s| (s.name(), matches!(s, DeviceSpec::Vxlan(_))))
                .collect(),
            routes: &d.routes,
            neighbours: &d.neighbours,
            fdb: &d.fdb,
        }
    }
}

impl<K: Kernel> Reconciler<K> {
    /// What [`Reconciler::apply`] would change for `desired`, read-only.
    /// Entries and routes of a device that is missing are all pending.
    pub async fn pending(
        &self,
        desired: &Desired,
        node: &NodeContext,
    ) -> Result<Pending, NetlinkError> {
        let nl = &self.nl;
        let mut pending = Pending::default();
        let mut device_indexes: HashMap<String, u32> = HashMap::new();
        for spec in &desired.devices {
            let name = spec.name().to_owned();
            let Some(link) = nl.link_by_name(&name).await? else {
                pending.devices.push((name, DeviceDrift::Missing));
                continue;
            };
            device_indexes.insert(name.clone(), link.index);
            if !devices::compatible(&link, spec) {
                pending.devices.push((name, DeviceDrift::Incompatible));
                continue;
            }
            if link.mtu != spec.mtu() {
                let drift = DeviceDrift::Mtu {
                    have: link.mtu,
                    want: spec.mtu(),
                };
                pending.devices.push((name.clone(), drift));
            }
            if !link.admin_up {
                pending.devices.push((name.clone(), DeviceDrift::Down));
            }
            let have: Vec<IpNet> = nl
                .addresses(link.index)
                .await?
                .into_iter()
                .filter(|a| a.scope != Scope::Link)
                .map(|a| a.prefix)
                .collect();
            let want = spec.addresses();
            for a in want.iter().filter(|a| !have.contains(a)) {
                pending
                    .devices
                    .push((name.clone(), DeviceDrift::AddressMissing(*a)));
            }
            for a in have.iter().filter(|a| !want.contains(a)) {
                pending
                    .devices
                    .push((name.clone(), DeviceDrift::AddressStray(*a)));
            }
        }

        let (entries, routes) = self
            .pending_entries(&DesiredEntries::from(desired), &device_indexes, node)
            .await?;
        pending.entries = entries;
        pending.routes = routes;
        Ok(pending)
    }

    /// The entry and route part of [`Reconciler::pending`], for devices
    /// known by name: `device_indexes` holds those that exist (see
    /// [`Reconciler::device_indexes`]).
    pub async fn pending_entries(
        &self,
        desired: &DesiredEntries<'_>,
        device_indexes: &HashMap<String, u32>,
        node: &NodeContext,
    ) -> Result<(Vec<(String, EntryChanges)>, RouteChanges), NetlinkError> {
        let nl = &self.nl;
        let want_neigh = entries::neighbours_by_dev(desired.neighbours);
        let want_fdb = entries::fdb_by_dev(desired.fdb);
        let empty_neigh = Default::default();
        let empty_fdb = Default::default();
        let mut pending = Vec::new();
        for &(name, vxlan) in &desired.devices {
            if !vxlan {
                continue;
            }
            let want_n = want_neigh.get(name).unwrap_or(&empty_neigh);
            let want_f = want_fdb.get(name).unwrap_or(&empty_fdb);
            let changes = match device_indexes.get(name) {
                Some(&index) => entries::diff(
                    index,
                    &nl.neighbours(index).await?,
                    &nl.fdb(index).await?,
                    want_n,
                    want_f,
                ),
                None => entries::diff(0, &[], &[], want_n, want_f),
            };
            pending.push((name.to_owned(), changes));
        }

        let ctx = RouteContext {
            underlay_index: node.underlay_index,
            device_indexes,
            cluster_networks: &node.cluster_networks,
        };
        let mut want_routes = Vec::new();
        let mut missing_device = Vec::new();
        for r in desired.routes {
            match routes::spec_of(r, &ctx) {
                Some(spec) => want_routes.push(spec),
                // Its device is missing: the route is missing too.
                None => missing_device.push(r.dst),
            }
        }
        let mut changes = routes::diff(&routes::read(nl).await?, &want_routes, &ctx);
        changes.missing_device = missing_device;
        Ok((pending, changes))
    }

    /// The indexes of the named devices that exist.
    pub async fn device_indexes(
        &self,
        names: &[&str],
    ) -> Result<HashMap<String, u32>, NetlinkError> {
        let mut out = HashMap::new();
        for name in names {
            if let Some(link) = self.nl.link_by_name(name).await? {
                out.insert((*name).to_owned(), link.index);
            }
        }
        Ok(out)
    }
}
