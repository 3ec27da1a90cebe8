//! The reconciler's rules against [`FakeKernel`]: no root, no namespace.
//! What a pass creates, that a second pass changes nothing, what it adopts
//! from flannel, what it repairs, what it removes and what it leaves alone.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_core::mac::Mac;
use weft_core::plan::{
    Desired, Dev, DeviceSpec, FdbPlan, IpipDevice, NeighPlan, RoutePlan, RouteTarget, VxlanDevice,
};

use super::{FakeKernel, NodeContext, Reconciler};
use crate::netlink::{
    FdbInfo, LinkKind, MAIN_TABLE, NeighInfo, NeighState, RouteInfo, RouteKind, Scope,
    WEFT_ROUTE_PROTOCOL,
};

/// flannel's routes carry `proto boot`.
const PROTO_BOOT: u8 = 3;
const PROTO_STATIC: u8 = 4;

fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|_| unreachable!("bad test net {s}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|_| unreachable!("bad test ip {s}"))
}

fn mac(last: u8) -> Mac {
    Mac([0x02, 0x42, 0, 0, 0, last])
}

fn run<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| unreachable!("a runtime: {e}"))
        .block_on(f)
}

/// A node with an underlay NIC, and its reconciler.
fn node() -> (Reconciler<FakeKernel>, NodeContext) {
    let kernel = FakeKernel::new();
    let underlay_index = kernel.add_link("eth0", LinkKind::Device, 1500, Some(mac(0xee)));
    let node = NodeContext {
        underlay_index,
        cluster_networks: vec![net("10.244.0.0/16")],
    };
    (Reconciler::new(kernel), node)
}

fn vxlan(underlay_index: u32, mtu: u32) -> DeviceSpec {
    DeviceSpec::Vxlan(VxlanDevice {
        name: "flannel.1".into(),
        vni: 1,
        port: 8472,
        local: ip("192.0.2.1"),
        underlay_index,
        mtu,
        mac: mac(1),
        gbp: false,
        learning: false,
        tx_checksum_offload: false,
        address: net("10.244.1.0/32"),
    })
}

/// flannel's vxlan plan for `peers` (2, 3, … → 10.244.N.0/24 at 192.0.2.N).
fn vxlan_plan(underlay_index: u32, peers: &[u8]) -> Desired {
    let mut d = Desired {
        mtu: 1450,
        devices: vec![vxlan(underlay_index, 1450)],
        ..Desired::default()
    };
    for &n in peers {
        let gw = ip(&format!("10.244.{n}.0"));
        d.routes.push(RoutePlan {
            dst: net(&format!("10.244.{n}.0/24")),
            target: RouteTarget::Via {
                gateway: gw,
                dev: Dev::Named("flannel.1".into()),
                onlink: true,
            },
        });
        d.neighbours.push(NeighPlan {
            dev: "flannel.1".into(),
            ip: gw,
            mac: mac(n),
        });
        d.fdb.push(FdbPlan {
            dev: "flannel.1".into(),
            mac: mac(n),
            dst: ip(&format!("192.0.2.{n}")),
        });
    }
    d
}

/// A node after a first pass for `peers`, and its flannel.1's index.
fn programmed(peers: &[u8]) -> (Reconciler<FakeKernel>, NodeContext, u32) {
    let (r, node) = node();
    run(r.apply(&vxlan_plan(node.underlay_index, peers), &node)).unwrap_or_else(|e| panic!("{e}"));
    let index = r
        .netlink()
        .link("flannel.1")
        .map(|l| l.index)
        .unwrap_or_default();
    (r, node, index)
}

fn routes_to(r: &Reconciler<FakeKernel>) -> Vec<IpNet> {
    let mut dsts: Vec<IpNet> = r.netlink().all_routes().iter().map(|r| r.dst).collect();
    dsts.sort();
    dsts
}

#[test]
fn a_first_pass_programs_everything_and_a_second_changes_nothing() {
    let (r, node) = node();
    let plan = vxlan_plan(node.underlay_index, &[2, 3]);
    let report = run(r.apply(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.devices_created, 1);
    assert_eq!(report.routes_set, 2);
    assert_eq!((report.neighbours_set, report.fdb_set), (2, 2));
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let kernel = r.netlink();
    let dev = kernel
        .link("flannel.1")
        .unwrap_or_else(|| panic!("no flannel.1"));
    assert!(dev.admin_up);
    assert_eq!((dev.mtu, dev.mac), (1450, Some(mac(1))));
    assert_eq!(kernel.tx_checksum_of("flannel.1"), Some(false));
    let addrs: Vec<IpNet> = kernel
        .all_addresses(dev.index)
        .iter()
        .map(|a| a.prefix)
        .collect();
    assert_eq!(addrs, vec![net("10.244.1.0/32")]);
    for route in kernel.all_routes() {
        assert_eq!(route.protocol, WEFT_ROUTE_PROTOCOL, "{route:?}");
        assert!(route.onlink && route.oif == Some(dev.index), "{route:?}");
    }
    assert_eq!(
        routes_to(&r),
        vec![net("10.244.2.0/24"), net("10.244.3.0/24")]
    );
    assert_eq!(kernel.all_fdb(dev.index).len(), 2);
    kernel.changes();

    let again = run(r.apply(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.changes(), 0, "{again}");
    assert_eq!(kernel.changes(), Vec::<String>::new());
}

#[test]
fn a_departed_peer_leaves_route_neighbour_and_fdb_entry() {
    let (r, node) = node();
    run(r.apply(&vxlan_plan(node.underlay_index, &[2, 3]), &node))
        .unwrap_or_else(|e| panic!("{e}"));
    let report = run(r.apply(&vxlan_plan(node.underlay_index, &[2]), &node))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            report.routes_deleted,
            report.neighbours_deleted,
            report.fdb_deleted
        ),
        (1, 1, 1)
    );
    let index = r
        .netlink()
        .link("flannel.1")
        .map(|l| l.index)
        .unwrap_or_default();
    assert_eq!(routes_to(&r), vec![net("10.244.2.0/24")]);
    assert_eq!(r.netlink().all_neighbours(index).len(), 1);
    assert_eq!(r.netlink().all_fdb(index).len(), 1);
}

/// A node moving from flannel keeps its traffic: flannel's `proto boot`
/// route through its device is taken over in place (replaced with weft's
/// protocol, never deleted first), a stale one of flannel's into the
/// cluster network goes, and nobody else's route is touched.
#[test]
fn flannels_routes_are_adopted_in_place_and_foreign_ones_left_alone() {
    let (r, node) = node();
    // flannel's device, as flannel left it (compatible: kept).
    run(r.apply(&vxlan_plan(node.underlay_index, &[]), &node)).unwrap_or_else(|e| panic!("{e}"));
    let kernel = r.netlink();
    let flannel1 = kernel
        .link("flannel.1")
        .map(|l| l.index)
        .unwrap_or_default();
    let route = |dst: &str, gw: &str, oif: u32, protocol: u8| RouteInfo {
        dst: net(dst),
        gateway: Some(ip(gw)),
        oif: Some(oif),
        onlink: true,
        protocol,
        kind: RouteKind::Unicast,
        scope: Scope::Universe,
        table: MAIN_TABLE,
        prefsrc: None,
        metric: None,
    };
    kernel.add_route(route("10.244.2.0/24", "10.244.2.0", flannel1, PROTO_BOOT));
    kernel.add_route(route(
        "10.244.9.0/24",
        "192.0.2.9",
        node.underlay_index,
        PROTO_BOOT,
    ));
    kernel.add_route(route(
        "10.244.8.0/24",
        "192.0.2.8",
        node.underlay_index,
        PROTO_STATIC,
    ));
    kernel.add_route(route(
        "203.0.113.0/24",
        "192.0.2.254",
        node.underlay_index,
        PROTO_BOOT,
    ));
    kernel.changes();

    let report = run(r.apply(&vxlan_plan(node.underlay_index, &[2]), &node))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.devices_created, report.devices_recreated), (0, 0));
    let changes = kernel.changes();
    assert!(
        changes.contains(&"replace_route 10.244.2.0/24".to_owned()),
        "{changes:?}"
    );
    assert!(
        !changes.contains(&"delete_route 10.244.2.0/24".to_owned()),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"delete_route 10.244.9.0/24".to_owned()),
        "{changes:?}"
    );
    assert_eq!(
        routes_to(&r),
        vec![
            net("10.244.2.0/24"),
            net("10.244.8.0/24"),
            net("203.0.113.0/24")
        ],
        "a static route, or a boot route outside the cluster and off our devices, was touched"
    );
    let adopted = kernel
        .all_routes()
        .into_iter()
        .find(|r| r.dst == net("10.244.2.0/24"));
    assert_eq!(adopted.map(|r| r.protocol), Some(WEFT_ROUTE_PROTOCOL));
}

/// Stale entries on our device go; a neighbour the kernel learnt (not
/// permanent) is not ours and stays.
#[test]
fn stale_permanent_entries_go_and_learnt_ones_stay() {
    let (r, node, index) = programmed(&[2]);
    let kernel = r.netlink();
    kernel.add_neighbour(NeighInfo {
        index,
        ip: ip("10.244.7.0"),
        mac: Some(mac(7)),
        state: NeighState::Permanent,
    });
    kernel.add_neighbour(NeighInfo {
        index,
        ip: ip("10.244.8.0"),
        mac: Some(mac(8)),
        state: NeighState::Reachable,
    });
    kernel.add_fdb(FdbInfo {
        index,
        mac: mac(7),
        dst: Some(ip("192.0.2.7")),
        is_self: true,
        permanent: true,
    });
    let report = run(r.apply(&vxlan_plan(node.underlay_index, &[2]), &node))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.neighbours_deleted, report.fdb_deleted), (1, 1));
    let left: Vec<IpAddr> = kernel.all_neighbours(index).iter().map(|n| n.ip).collect();
    assert!(
        left.contains(&ip("10.244.8.0")) && !left.contains(&ip("10.244.7.0")),
        "{left:?}"
    );
}

/// Drift is put right in place: an MTU, a MAC, a stray address, a device
/// left down, TX checksum offload turned back on — without recreating the
/// device (a recreation would drop every entry on it).
#[test]
fn drift_on_our_device_is_repaired_in_place() {
    let (r, node, index) = programmed(&[2]);
    let kernel = r.netlink();
    run(async {
        use super::Kernel as _;
        kernel.set_link_mtu(index, 1400).await?;
        kernel.set_link_down(index).await?;
        kernel.add_address(index, net("10.99.0.1/32")).await?;
        kernel.set_tx_checksum("flannel.1", true).await
    })
    .unwrap_or_else(|e| panic!("{e}"));
    kernel.changes();
    let report = run(r.apply(&vxlan_plan(node.underlay_index, &[2]), &node))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.devices_created, report.devices_recreated), (0, 0));
    let dev = kernel
        .link("flannel.1")
        .unwrap_or_else(|| panic!("flannel.1 gone"));
    assert_eq!((dev.index, dev.mtu, dev.admin_up), (index, 1450, true));
    assert_eq!(kernel.tx_checksum_of("flannel.1"), Some(false));
    let addrs: Vec<IpNet> = kernel
        .all_addresses(index)
        .iter()
        .map(|a| a.prefix)
        .collect();
    assert_eq!(addrs, vec![net("10.244.1.0/32")]);
    assert_eq!(routes_to(&r), vec![net("10.244.2.0/24")]);
}

/// A device whose identity changed (another VNI's worth of parameters
/// cannot change in place) is recreated with every entry; a weft device
/// no longer wanted (the backend changed) is removed; a foreign one stays.
#[test]
fn incompatible_devices_are_recreated_and_unwanted_ones_removed() {
    let (r, node) = node();
    run(r.apply(&vxlan_plan(node.underlay_index, &[2]), &node)).unwrap_or_else(|e| panic!("{e}"));
    let kernel = r.netlink();
    kernel.add_link("cni0", LinkKind::Bridge, 1450, Some(mac(9)));

    let ipip = Desired {
        mtu: 1480,
        devices: vec![DeviceSpec::Ipip(IpipDevice {
            name: "flannel.ipip".into(),
            local: "192.0.2.1".parse().unwrap_or_else(|_| unreachable!()),
            mtu: 1480,
            address: net("10.244.1.0/32"),
        })],
        routes: vec![RoutePlan {
            dst: net("10.244.2.0/24"),
            target: RouteTarget::Via {
                gateway: ip("192.0.2.2"),
                dev: Dev::Named("flannel.ipip".into()),
                onlink: true,
            },
        }],
        ..Desired::default()
    };
    let report = run(r.apply(&ipip, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.devices_created, report.devices_deleted), (1, 1));
    assert!(kernel.link("flannel.1").is_none());
    assert!(
        kernel.link("cni0").is_some(),
        "a foreign device was removed"
    );
    let dev = kernel
        .link("flannel.ipip")
        .unwrap_or_else(|| panic!("no flannel.ipip"));
    assert_eq!(
        kernel
            .all_routes()
            .iter()
            .map(|r| (r.dst, r.oif))
            .collect::<Vec<_>>(),
        vec![(net("10.244.2.0/24"), Some(dev.index))]
    );
}

/// One entry the kernel refuses does not stop the pass: the others go in,
/// the report names the failure, and the next pass completes the work.
#[test]
fn a_refused_entry_is_reported_and_retried_by_the_next_pass() {
    let (r, node) = node();
    let plan = vxlan_plan(node.underlay_index, &[2, 3]);
    r.netlink().fail("replace_routes", 1);
    let report = run(r.apply(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.routes_set, 1);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].object.starts_with("route 10.244.") && report.errors[0].is_retryable(),
        "{:?}",
        report.errors
    );
    let next = run(r.apply(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.routes_set, 1);
    assert!(next.errors.is_empty());
    assert_eq!(routes_to(&r).len(), 2);
}

/// A device the kernel will not create aborts the pass (nothing else can
/// be right without it) with the kernel's reason.
#[test]
fn a_device_that_cannot_be_made_fails_the_pass() {
    let (r, node) = node();
    r.netlink().fail("create_vxlan", 1);
    let err = run(r.apply(&vxlan_plan(node.underlay_index, &[2]), &node))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("create_vxlan"), "{err}");
    assert!(r.netlink().all_routes().is_empty());
}

/// The fast path puts a new peer's entries in without reading the kernel,
/// and the full pass after it finds nothing left to do for them.
#[test]
fn additions_go_in_first_and_the_full_pass_agrees() {
    let (r, node) = node();
    let before = vxlan_plan(node.underlay_index, &[2]);
    run(r.apply(&before, &node)).unwrap_or_else(|e| panic!("{e}"));
    let after = vxlan_plan(node.underlay_index, &[2, 3]);
    let early = run(r.apply_additions(&before, &after, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (early.routes_set, early.neighbours_set, early.fdb_set),
        (1, 1, 1)
    );
    let full = run(r.apply(&after, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(full.changes(), 0, "{full}");
}

/// `pending` (what `weft status` reports) sees exactly what a pass would
/// change — a route right in every field but its protocol included, which
/// a comparison of destination, gateway and device calls "in sync" — and
/// changes nothing itself.
#[test]
fn pending_is_what_a_pass_would_do_and_changes_nothing() {
    let (r, node) = node();
    let plan = vxlan_plan(node.underlay_index, &[2, 3]);
    let before = run(r.pending(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        before.devices,
        vec![("flannel.1".to_owned(), super::DeviceDrift::Missing)]
    );
    assert_eq!(before.routes.missing_device.len(), 2);
    assert_eq!(r.netlink().changes(), Vec::<String>::new());

    run(r.apply(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    let kernel = r.netlink();
    kernel.changes();
    assert!(
        run(r.pending(&plan, &node))
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );

    // The route to node2, rewritten by someone with another protocol.
    let mut route = kernel
        .all_routes()
        .into_iter()
        .find(|r| r.dst == net("10.244.2.0/24"))
        .unwrap_or_else(|| panic!("no route"));
    route.protocol = PROTO_STATIC;
    run(async {
        use super::Kernel as _;
        kernel
            .replace_routes(&[crate::netlink::RouteSpec::from(&route)])
            .await
    });
    let index = kernel
        .link("flannel.1")
        .map(|l| l.index)
        .unwrap_or_default();
    kernel.add_neighbour(NeighInfo {
        index,
        ip: ip("10.244.7.0"),
        mac: Some(mac(7)),
        state: NeighState::Permanent,
    });
    kernel.changes();
    let p = run(r.pending(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    let set: Vec<IpNet> = p.routes.set.iter().map(|s| s.dst).collect();
    assert_eq!(set, vec![net("10.244.2.0/24")]);
    assert_eq!(p.entries[0].1.neigh_del, vec![ip("10.244.7.0")]);
    assert_eq!(
        kernel.changes(),
        Vec::<String>::new(),
        "pending changed the kernel"
    );
    let report = run(r.apply(&plan, &node)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.routes_set, report.neighbours_deleted), (1, 1));
}
