//! The kernel's drift from what the agent wants, judged by the reconciler's
//! own rules: the agent's desired routes and entries (from its status
//! view) go through the same diff functions a pass uses, so `weft status`
//! says "in sync" exactly when the next pass would change nothing — a
//! route right in destination, gateway and device but wrong in protocol or
//! scope is drift, and so is a stale route or entry the pass would remove.
//! Devices are compared on what the view carries: presence, MTU, address.

use std::collections::HashSet;
use std::net::IpAddr;

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use weft_core::mac::Mac;
use weft_core::plan::{Dev, FdbPlan, NeighPlan, RoutePlan, RouteTarget};
use weft_core::status::{DesiredView, RouteView, WgPeerView};
use weft_dataplane::netlink::Netlink;
use weft_dataplane::reconcile::{
    DesiredEntries, EntryChanges, NodeContext, Reconciler, RouteChanges,
};

use super::Drift;

/// What a pass would change, with what the per-peer rows need.
#[derive(Debug, Default)]
pub struct KernelDrift {
    pub drift: Vec<Drift>,
    /// Desired routes the kernel lacks or holds differently.
    routes_off: HashSet<IpNet>,
    /// Desired neighbours (by gateway address) and FDB entries likewise.
    neighbours_off: HashSet<IpAddr>,
    fdb_off: HashSet<(Mac, IpAddr)>,
}

impl KernelDrift {
    pub fn route_ok(&self, dst: &str) -> bool {
        dst.parse::<IpNet>()
            .is_ok_and(|d| !self.routes_off.contains(&d))
    }

    pub fn neighbour_ok(&self, ip: &str) -> bool {
        ip.parse::<IpAddr>()
            .is_ok_and(|a| !self.neighbours_off.contains(&a))
    }

    pub fn fdb_ok(&self, mac: &str, dst: &str) -> bool {
        match (mac.parse::<Mac>(), dst.parse::<IpAddr>()) {
            (Ok(m), Ok(d)) => !self.fdb_off.contains(&(m, d)),
            _ => false,
        }
    }
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| anyhow::anyhow!("the agent's status has an unreadable {what} {s:?}: {e}"))
}

/// The planner's routes back from their status form. A device that is not
/// one of the agent's is the underlay (host-gw, DirectRouting).
fn route_plan(r: &RouteView, own_devices: &[&str]) -> Result<RoutePlan> {
    let dst = parse("route destination", &r.dst)?;
    let dev = |name: &Option<String>| match name {
        Some(n) if own_devices.contains(&n.as_str()) => Dev::Named(n.clone()),
        _ => Dev::Underlay,
    };
    let target = match (&r.via, r.blackhole) {
        (_, true) => RouteTarget::Blackhole,
        (Some(via), false) => RouteTarget::Via {
            gateway: parse("gateway", via)?,
            dev: dev(&r.dev),
            onlink: r.onlink,
        },
        (None, false) => RouteTarget::Link { dev: dev(&r.dev) },
    };
    Ok(RoutePlan { dst, target })
}

/// Reads the kernel of this namespace and diffs it against `desired`.
pub async fn read(desired: &DesiredView, wg_views: &[WgPeerView]) -> Result<KernelDrift> {
    let nl = Netlink::connect().context("cannot open netlink")?;
    let links = nl.links().await?;
    let own: Vec<&str> = desired.devices.iter().map(|d| d.name.as_str()).collect();
    let mut out = KernelDrift::default();
    devices(desired, &nl, &links, &mut out).await?;

    let routes: Vec<RoutePlan> = desired
        .routes
        .iter()
        .map(|r| route_plan(r, &own))
        .collect::<Result<_>>()?;
    let neighbours: Vec<NeighPlan> = desired
        .neighbours
        .iter()
        .map(|n| {
            Ok(NeighPlan {
                dev: n.dev.clone(),
                ip: parse("neighbour address", &n.ip)?,
                mac: parse("neighbour MAC", &n.mac)?,
            })
        })
        .collect::<Result<_>>()?;
    let fdb: Vec<FdbPlan> = desired
        .fdb
        .iter()
        .map(|f| {
            Ok(FdbPlan {
                dev: f.dev.clone(),
                mac: parse("FDB MAC", &f.mac)?,
                dst: parse("FDB remote", &f.dst)?,
            })
        })
        .collect::<Result<_>>()?;
    // The underlay is whatever device the agent's underlay routes leave by.
    let underlay_index = desired
        .routes
        .iter()
        .filter_map(|r| r.dev.as_deref())
        .find(|d| !own.contains(d))
        .and_then(|d| links.iter().find(|l| l.name == d))
        .map_or(0, |l| l.index);
    let node = NodeContext {
        underlay_index,
        cluster_networks: Vec::new(),
    };
    let entries = DesiredEntries {
        devices: desired
            .devices
            .iter()
            .map(|d| (d.name.as_str(), d.kind == "vxlan"))
            .collect(),
        routes: &routes,
        neighbours: &neighbours,
        fdb: &fdb,
    };
    let reconciler = Reconciler::new(nl);
    let indexes = reconciler.device_indexes(&own).await?;
    let (entry_changes, route_changes) = reconciler
        .pending_entries(&entries, &indexes, &node)
        .await?;
    note_routes(desired, &route_changes, &mut out);
    for (dev, changes) in &entry_changes {
        note_entries(dev, changes, &mut out);
    }
    wireguard(desired, wg_views, &mut out);
    Ok(out)
}

async fn devices(
    desired: &DesiredView,
    nl: &Netlink,
    links: &[weft_dataplane::netlink::LinkInfo],
    out: &mut KernelDrift,
) -> Result<()> {
    for d in &desired.devices {
        let mut problem = |p: String| {
            out.drift.push(Drift {
                kind: "device",
                what: d.name.clone(),
                problem: p,
            })
        };
        let Some(link) = links.iter().find(|l| l.name == d.name) else {
            problem("missing".into());
            continue;
        };
        if link.mtu != d.mtu {
            problem(format!("MTU {}, want {}", link.mtu, d.mtu));
        }
        let have: Vec<String> = nl
            .addresses(link.index)
            .await?
            .iter()
            .map(|a| a.prefix.to_string())
            .collect();
        for want in d.address.split(", ").filter(|a| !a.is_empty()) {
            if !have.iter().any(|h| h == want) {
                problem(format!("address {want} missing"));
            }
        }
    }
    Ok(())
}

fn note_routes(desired: &DesiredView, c: &RouteChanges, out: &mut KernelDrift) {
    let view_of = |dst: &IpNet| {
        desired
            .routes
            .iter()
            .find(|r| r.dst.parse::<IpNet>().is_ok_and(|d| d == *dst))
    };
    for (dst, problem) in c
        .set
        .iter()
        .map(|s| {
            (
                s.dst,
                "missing from the kernel, or different there (protocol, scope, gateway or device)",
            )
        })
        .chain(
            c.missing_device
                .iter()
                .map(|d| (*d, "its device is missing")),
        )
    {
        out.routes_off.insert(dst);
        out.drift.push(Drift {
            kind: "route",
            what: view_of(&dst).map_or_else(|| dst.to_string(), super::route_text),
            problem: problem.into(),
        });
    }
    for s in &c.delete {
        let via = s.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        out.drift.push(Drift {
            kind: "route",
            what: format!("{}{via}", s.dst),
            problem: "stale: weft's, but not wanted (the next pass removes it)".into(),
        });
    }
}

fn note_entries(dev: &str, c: &EntryChanges, out: &mut KernelDrift) {
    for (ip, mac) in &c.neigh_set {
        out.neighbours_off.insert(*ip);
        out.drift.push(Drift {
            kind: "neighbour",
            what: format!("{ip} lladdr {mac} dev {dev}"),
            problem: "missing from the kernel, or not permanent with this MAC".into(),
        });
    }
    for ip in &c.neigh_del {
        out.drift.push(Drift {
            kind: "neighbour",
            what: format!("{ip} dev {dev}"),
            problem: "stale: no peer has it (the next pass removes it)".into(),
        });
    }
    for (mac, dst) in &c.fdb_set {
        out.fdb_off.insert((*mac, *dst));
        out.drift.push(Drift {
            kind: "fdb",
            what: format!("{mac} dst {dst} dev {dev}"),
            problem: "missing from the kernel".into(),
        });
    }
    for (mac, dst) in &c.fdb_del {
        out.drift.push(Drift {
            kind: "fdb",
            what: format!("{mac} dst {dst} dev {dev}"),
            problem: "stale: no peer has it (the next pass removes it)".into(),
        });
    }
}

fn wireguard(desired: &DesiredView, wg_views: &[WgPeerView], out: &mut KernelDrift) {
    let now = std::time::SystemTime::now();
    for w in &desired.wireguard {
        let what = format!("peer {} on {}", w.public_key, w.device);
        match wg_views
            .iter()
            .find(|v| v.device == w.device && v.public_key == w.public_key)
        {
            None => out.drift.push(Drift {
                kind: "wireguard",
                what,
                problem: "missing from the device".into(),
            }),
            Some(v) => {
                let mut have: Vec<&String> = v.allowed_ips.iter().collect();
                let mut want: Vec<&String> = w.allowed_ips.iter().collect();
                have.sort();
                want.sort();
                // A roamed endpoint with a live session is where the peer
                // really is: the agent keeps it, so it is no drift.
                let handshake = v
                    .last_handshake_unix
                    .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
                let endpoint_off = v.endpoint.as_deref() != Some(w.endpoint.as_str())
                    && !weft_dataplane::wireguard::session_is_live(handshake, now);
                if endpoint_off || have != want {
                    out.drift.push(Drift {
                        kind: "wireguard",
                        what,
                        problem: format!(
                            "endpoint {} allowed {:?}, want {} {:?}",
                            v.endpoint.as_deref().unwrap_or("none"),
                            v.allowed_ips,
                            w.endpoint,
                            w.allowed_ips
                        ),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(dst: &str, via: Option<&str>, dev: Option<&str>, onlink: bool) -> RouteView {
        RouteView {
            dst: dst.into(),
            via: via.map(Into::into),
            dev: dev.map(Into::into),
            onlink,
            blackhole: false,
        }
    }

    #[test]
    fn routes_come_back_as_the_planner_made_them() {
        let own = ["flannel.1"];
        let vx = route_plan(
            &view("10.244.2.0/24", Some("10.244.2.0"), Some("flannel.1"), true),
            &own,
        );
        assert!(matches!(
            vx.map(|r| r.target).ok(),
            Some(RouteTarget::Via { dev: Dev::Named(n), onlink: true, .. }) if n == "flannel.1"
        ));
        let hg = route_plan(
            &view("10.244.3.0/24", Some("192.0.2.3"), Some("eth0"), false),
            &own,
        );
        assert!(matches!(
            hg.map(|r| r.target).ok(),
            Some(RouteTarget::Via {
                dev: Dev::Underlay,
                onlink: false,
                ..
            })
        ));
        let wg = route_plan(&view("10.244.0.0/16", None, Some("flannel.1"), false), &own);
        assert!(matches!(
            wg.map(|r| r.target).ok(),
            Some(RouteTarget::Link { dev: Dev::Named(_) })
        ));
        let mut bh = view("10.244.1.0/24", None, None, false);
        bh.blackhole = true;
        assert!(matches!(
            route_plan(&bh, &own).map(|r| r.target).ok(),
            Some(RouteTarget::Blackhole)
        ));
        let bad = route_plan(&view("10.244.x/24", None, None, false), &own);
        assert!(bad.is_err_and(|e| e.to_string().contains("route destination")));
    }

    fn wg_state(endpoint: &str, handshake_ago: Option<u64>) -> (DesiredView, Vec<WgPeerView>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let desired = DesiredView {
            mtu: 1420,
            devices: Vec::new(),
            routes: Vec::new(),
            neighbours: Vec::new(),
            fdb: Vec::new(),
            unprogrammed: Vec::new(),
            wireguard: vec![weft_core::status::WgPeerWant {
                device: "flannel-wg".into(),
                peer: "node2".into(),
                public_key: "k2".into(),
                endpoint: "203.0.113.2:51820".into(),
                allowed_ips: vec!["10.244.2.0/24".into()],
            }],
        };
        let view = WgPeerView {
            device: "flannel-wg".into(),
            public_key: "k2".into(),
            endpoint: Some(endpoint.into()),
            allowed_ips: vec!["10.244.2.0/24".into()],
            last_handshake_unix: handshake_ago.map(|ago| now - ago),
            rx_bytes: 0,
            tx_bytes: 0,
        };
        (desired, vec![view])
    }

    /// A roamed endpoint with a live session is what the agent keeps: no
    /// drift. The same endpoint with no session for 3 minutes is drift the
    /// next pass repairs.
    #[test]
    fn roamed_endpoints_are_drift_only_when_their_session_is_gone() {
        let (desired, views) = wg_state("203.0.113.2:40123", Some(20));
        let mut out = KernelDrift::default();
        wireguard(&desired, &views, &mut out);
        assert!(out.drift.is_empty(), "{:?}", out.drift);

        let (desired, views) = wg_state("203.0.113.2:40123", Some(200));
        let mut out = KernelDrift::default();
        wireguard(&desired, &views, &mut out);
        assert_eq!(out.drift.len(), 1, "{:?}", out.drift);
        assert!(out.drift[0].problem.contains("endpoint 203.0.113.2:40123"));
    }
}
