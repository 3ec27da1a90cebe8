//! Routes: the desired ones set with weft's protocol number, stale owned
//! ones removed. A route is weft's if it carries weft's protocol, or if it
//! is flannel's (`proto boot`) and either leaves through a weft device or
//! points into the cluster network via a gateway — so a node migrating from
//! flannel has its old routes adopted in place, without a gap.

use std::collections::HashMap;

use ipnet::IpNet;
use weft_core::Family;
use weft_core::fast_hash::FastMap;
use weft_core::plan::{Dev, RoutePlan, RouteTarget};

use super::entries::note;
use super::{ApplyReport, Kernel};
use crate::netlink::{
    MAIN_TABLE, NetlinkError, RouteInfo, RouteKind, RouteSpec, WEFT_ROUTE_PROTOCOL,
};

/// `proto boot`: what flannel's routes carry.
const PROTO_BOOT: u8 = 3;

/// Facts route ownership depends on.
pub struct RouteContext<'a> {
    pub underlay_index: u32,
    pub device_indexes: &'a HashMap<String, u32>,
    pub cluster_networks: &'a [IpNet],
}

fn owned(r: &RouteInfo, ctx: &RouteContext<'_>) -> bool {
    if r.table != MAIN_TABLE {
        return false;
    }
    if r.protocol == WEFT_ROUTE_PROTOCOL {
        return true;
    }
    if r.protocol != PROTO_BOOT {
        return false;
    }
    let on_our_device = r
        .oif
        .is_some_and(|i| ctx.device_indexes.values().any(|d| *d == i));
    let into_cluster =
        r.gateway.is_some() && ctx.cluster_networks.iter().any(|n| n.contains(&r.dst));
    on_our_device || into_cluster
}

/// The kernel form of a planned route; `None` when its device is missing
/// (the device step failed and reported it).
pub fn spec_of(plan: &RoutePlan, ctx: &RouteContext<'_>) -> Option<RouteSpec> {
    let index_of = |dev: &Dev| match dev {
        Dev::Underlay => Some(ctx.underlay_index),
        Dev::Named(name) => ctx.device_indexes.get(name).copied(),
    };
    let spec = match &plan.target {
        RouteTarget::Blackhole => RouteSpec::blackhole(plan.dst),
        RouteTarget::Link { dev } => RouteSpec::unicast(plan.dst)
            .dev(index_of(dev)?)
            .scope(crate::netlink::Scope::Link),
        RouteTarget::Via {
            gateway,
            dev,
            onlink,
        } => {
            let oif = index_of(dev)?;
            let s = RouteSpec::unicast(plan.dst).via(*gateway).dev(oif);
            if *onlink { s.onlink() } else { s }
        }
    };
    Some(spec.protocol(WEFT_ROUTE_PROTOCOL))
}

fn matches(have: &RouteInfo, want: &RouteSpec) -> bool {
    have.dst == want.dst
        && have.gateway == want.gateway
        && have.kind == want.kind
        && have.protocol == want.protocol
        && have.onlink == want.onlink
        && (want.kind == RouteKind::Blackhole || have.oif == want.oif)
        && have.scope == want.scope
}

/// Routes to set and to delete.
#[derive(Debug, Default)]
pub struct RouteChanges {
    pub set: Vec<RouteSpec>,
    pub delete: Vec<RouteSpec>,
    /// Desired routes whose device is missing ([`Reconciler::pending`]
    /// only: a pass creates the device first).
    ///
    /// [`Reconciler::pending`]: super::Reconciler::pending
    pub missing_device: Vec<IpNet>,
}

/// Every route of both families, as the diff reads them.
pub async fn read<K: Kernel>(nl: &K) -> Result<Vec<RouteInfo>, NetlinkError> {
    let mut have: Vec<RouteInfo> = Vec::new();
    for family in Family::ALL {
        have.extend(nl.routes(family).await?);
    }
    Ok(have)
}

/// The routes to set (desired, missing or different) and to delete (ours,
/// no longer desired), from what the kernel holds (pure: the caller reads
/// the kernel).
pub fn diff(have: &[RouteInfo], want: &[RouteSpec], ctx: &RouteContext<'_>) -> RouteChanges {
    let by_dst: FastMap<IpNet, Vec<&RouteInfo>> =
        have.iter().fold(FastMap::default(), |mut m, r| {
            m.entry(r.dst).or_default().push(r);
            m
        });
    let wanted: FastMap<IpNet, &RouteSpec> = want.iter().map(|s| (s.dst, s)).collect();
    let mut changes = RouteChanges::default();
    for spec in want {
        let present = by_dst
            .get(&spec.dst)
            .is_some_and(|rs| rs.iter().any(|r| matches(r, spec)));
        if !present {
            changes.set.push(spec.clone());
        }
    }
    for r in have {
        if owned(r, ctx) && !wanted.contains_key(&r.dst) {
            changes.delete.push(RouteSpec::from(r));
        }
    }
    changes
}

pub async fn apply_set<K: Kernel>(nl: &K, set: &[RouteSpec], report: &mut ApplyReport) {
    if set.is_empty() {
        return;
    }
    let r = nl.replace_routes(set).await;
    note(
        report,
        set,
        r,
        |r| &mut r.routes_set,
        false,
        |spec| format!("route {}", spec.dst),
    );
}

pub async fn apply_delete<K: Kernel>(nl: &K, delete: &[RouteSpec], report: &mut ApplyReport) {
    if delete.is_empty() {
        return;
    }
    let r = nl.delete_routes(delete).await;
    note(
        report,
        delete,
        r,
        |r| &mut r.routes_deleted,
        true,
        |spec| format!("deleting route {}", spec.dst),
    );
}
