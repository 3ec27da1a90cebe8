//! The reconciler: converges the kernel to the planner's desired state.
//!
//! Each pass reads what weft owns, diffs it against the plan and applies
//! only the difference, so it is idempotent and safe to run at any time:
//! after a store change, after a device was deleted under us, or on the
//! periodic resync. On a restart it adopts what is programmed (nothing is
//! flushed, traffic never stops) and removes what belongs to peers that
//! left meanwhile. Order within a pass: devices, then neighbour and FDB
//! additions, then routes, then removals, so a route never points at a
//! neighbour that is not there yet.

mod additions;
mod devices;
mod entries;
#[cfg(any(test, feature = "fake-kernel"))]
mod fake;
mod kernel;
mod pending;
mod report;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use ipnet::IpNet;
use weft_core::plan::Desired;

use crate::netlink::{Netlink, NetlinkError};
pub use devices::is_weft_device_name;
pub use entries::EntryChanges;
#[cfg(any(test, feature = "fake-kernel"))]
pub use fake::FakeKernel;
pub use kernel::Kernel;
pub use pending::{DesiredEntries, DeviceDrift, Pending};
pub use report::{ApplyReport, EntryError};
pub use routes::{RouteChanges, RouteContext};

/// The node facts a pass needs besides the plan.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub underlay_index: u32,
    /// Every cluster network: routes into them via a gateway with flannel's
    /// protocol are adopted as ours.
    pub cluster_networks: Vec<IpNet>,
}

/// Runs passes over one kernel connection: [`Netlink`] in the agent, a
/// [`FakeKernel`] in tests without root.
pub struct Reconciler<K: Kernel = Netlink> {
    nl: K,
}

impl<K: Kernel> Reconciler<K> {
    pub fn new(nl: K) -> Reconciler<K> {
        Reconciler { nl }
    }

    pub fn netlink(&self) -> &K {
        &self.nl
    }

    /// Creates or repairs the desired devices and nothing else: used before
    /// the first peer snapshot, when an empty peer list must not be taken
    /// for "every peer left".
    pub async fn ensure_devices(&self, desired: &Desired) -> Result<ApplyReport, NetlinkError> {
        let mut report = ApplyReport::default();
        for spec in &desired.devices {
            devices::ensure(&self.nl, spec, &mut report).await?;
        }
        Ok(report)
    }

    /// One pass. Device failures abort the pass (nothing else can be right
    /// without the device); failures of single entries are collected in the
    /// report and retried by the next pass.
    pub async fn apply(
        &self,
        desired: &Desired,
        node: &NodeContext,
    ) -> Result<ApplyReport, NetlinkError> {
        let nl = &self.nl;
        let mut report = ApplyReport::default();
        let mut device_indexes: HashMap<String, u32> = HashMap::new();
        for spec in &desired.devices {
            let index = devices::ensure(nl, spec, &mut report).await?;
            device_indexes.insert(spec.name().to_owned(), index);
        }

        let want_neigh = entries::neighbours_by_dev(&desired.neighbours);
        let want_fdb = entries::fdb_by_dev(&desired.fdb);
        let empty_neigh = Default::default();
        let empty_fdb = Default::default();
        let mut entry_changes = Vec::new();
        for spec in &desired.devices {
            if !matches!(spec, weft_core::plan::DeviceSpec::Vxlan(_)) {
                continue;
            }
            let name = spec.name();
            let Some(index) = device_indexes.get(name) else {
                continue;
            };
            let changes = entries::diff(
                *index,
                &nl.neighbours(*index).await?,
                &nl.fdb(*index).await?,
                want_neigh.get(name).unwrap_or(&empty_neigh),
                want_fdb.get(name).unwrap_or(&empty_fdb),
            );
            entries::apply_additions(nl, &changes, &mut report).await;
            entry_changes.push(changes);
        }

        let ctx = RouteContext {
            underlay_index: node.underlay_index,
            device_indexes: &device_indexes,
            cluster_networks: &node.cluster_networks,
        };
        let want_routes: Vec<_> = desired
            .routes
            .iter()
            .filter_map(|r| routes::spec_of(r, &ctx))
            .collect();
        let route_changes = routes::diff(&routes::read(nl).await?, &want_routes, &ctx);
        routes::apply_set(nl, &route_changes.set, &mut report).await;
        routes::apply_delete(nl, &route_changes.delete, &mut report).await;

        for changes in &entry_changes {
            entries::apply_removals(nl, changes, &mut report).await;
        }
        devices::remove_undesired(nl, &device_indexes, &mut report).await?;
        Ok(report)
    }
}
