//! The agent's orchestration without root: the first pass and the passes
//! after it, over `FakeKernel`. What they may touch and when, what reaches
//! subnet.env and the status API, and how a failed pass recovers.

use std::sync::Arc;

use ipnet::IpNet;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::mac::Mac;
use weft_core::netconf;
use weft_core::peer::ScreenedPeers;
use weft_core::plan::{LocalIdentity, Underlay};
use weft_dataplane::netlink::{
    LinkKind, MAIN_TABLE, RouteInfo, RouteKind, Scope, VxlanInfo, WEFT_ROUTE_PROTOCOL,
};
use weft_dataplane::reconcile::FakeKernel;
use weft_store::PeerSnapshot;

use super::Dataplane;

const NET_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|_| unreachable!("bad test net {s}"))
}

fn run<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| unreachable!("a runtime: {e}"))
        .block_on(f)
}

/// Node 1 (10.244.1.0/24 at 192.0.2.1) over an in-memory kernel holding
/// its NIC, with subnet.env in `dir`. `before` adds what the kernel held
/// before this agent started (given the NIC's index).
fn node1(dir: &std::path::Path, before: impl FnOnce(&FakeKernel, u32)) -> Dataplane<FakeKernel> {
    let kernel = FakeKernel::new();
    let eth0 = kernel.add_link(
        "eth0",
        LinkKind::Device,
        1500,
        Some(Mac([2, 0, 0, 0, 0, 0xee])),
    );
    before(&kernel, eth0);
    let cfg = netconf::parse(NET_CONF).unwrap_or_else(|e| panic!("{e}"));
    let underlay = Underlay {
        index: eth0,
        name: "eth0".into(),
        mtu: 1500,
        addr_v4: Some("192.0.2.1".parse().unwrap_or_else(|_| unreachable!())),
        addr_v6: None,
        connected: vec![net("192.0.2.0/24")],
        driver: Some("virtio_net".into()),
    };
    let local = LocalIdentity {
        vtep_mac_v4: Some(Mac([2, 0x42, 0, 0, 0, 1])),
        vtep_mac_v6: None,
    };
    Dataplane::for_tests(kernel, cfg, underlay, local, dir.join("subnet.env"))
}

/// Node `n`'s vxlan lease: 10.244.n.0/24 at 192.0.2.n.
fn lease(n: u8) -> Lease {
    let json = format!(
        r#"{{"PublicIP":"192.0.2.{n}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"02:42:00:00:00:{n:02x}"}}}}"#
    );
    Lease {
        subnets: LeaseSubnets {
            v4: Some(
                format!("10.244.{n}.0/24")
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            ),
            v6: None,
        },
        attrs: LeaseAttrs::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
        expiration: None,
    }
}

fn snapshot(revision: i64, peers: &[u8]) -> Arc<PeerSnapshot> {
    Arc::new(PeerSnapshot {
        revision,
        peers: Arc::new(ScreenedPeers {
            accepted: peers
                .iter()
                .map(|&n| (format!("node{n}"), lease(n)))
                .collect(),
            rejected: Vec::new(),
        }),
        own_present: true,
        skipped_total: Default::default(),
        watch_restarts: Default::default(),
        arrived: Vec::new(),
    })
}

/// The store's early snapshot: the previous snapshot's `peers` and the
/// newcomers `arrived`.
fn early_snapshot(revision: i64, peers: &[u8], arrived: &[u8]) -> Arc<PeerSnapshot> {
    let mut snap = (*snapshot(revision, peers)).clone();
    snap.arrived = arrived
        .iter()
        .map(|&n| (format!("node{n}"), lease(n)))
        .collect();
    Arc::new(snap)
}

/// Node 1 after its first pass and one snapshot of `peers`; its subnet.env
/// lives in the returned directory.
fn running(peers: &[u8]) -> (tempfile::TempDir, Dataplane<FakeKernel>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut dp = node1(dir.path(), |_, _| {});
    run(async {
        dp.start(&lease(1)).await?;
        dp.pass(&lease(1), &snapshot(1, peers)).await
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    (dir, dp)
}

fn routes(dp: &Dataplane<FakeKernel>) -> Vec<IpNet> {
    let mut dsts: Vec<IpNet> = dp
        .reconciler
        .netlink()
        .all_routes()
        .iter()
        .map(|r| r.dst)
        .collect();
    dsts.sort();
    dsts
}

/// The index of the vxlan device in the fake kernel (0 if there is none,
/// which no lookup by index then finds).
fn vxlan_index(dp: &Dataplane<FakeKernel>) -> u32 {
    dp.reconciler
        .netlink()
        .link("flannel.1")
        .map(|l| l.index)
        .unwrap_or_default()
}

/// After a restart the first pass runs before the store has said who the
/// peers are: it makes the device, subnet.env and the node ready, and must
/// not take "no peers yet" for "every peer left" — the routes a previous
/// run programmed stay, so pods keep talking.
#[test]
fn the_first_pass_keeps_what_a_previous_run_programmed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut dp = node1(dir.path(), |kernel, eth0| {
        // What the previous agent left: its device and a peer's route.
        let vxlan = LinkKind::Vxlan(VxlanInfo {
            vni: 1,
            port: 8472,
            local: Some("192.0.2.1".parse().unwrap_or_else(|_| unreachable!())),
            underlay_index: Some(eth0),
            learning: false,
            gbp: false,
        });
        let index = kernel.add_link("flannel.1", vxlan, 1450, Some(Mac([2, 0x42, 0, 0, 0, 1])));
        kernel.add_route(RouteInfo {
            dst: net("10.244.2.0/24"),
            gateway: Some("10.244.2.0".parse().unwrap_or_else(|_| unreachable!())),
            oif: Some(index),
            onlink: true,
            protocol: WEFT_ROUTE_PROTOCOL,
            kind: RouteKind::Unicast,
            scope: Scope::Universe,
            table: MAIN_TABLE,
            prefsrc: None,
            metric: None,
        });
    });
    run(dp.start(&lease(1))).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(routes(&dp), vec![net("10.244.2.0/24")]);
    let changes = dp.reconciler.netlink().changes();
    assert!(
        !changes
            .iter()
            .any(|c| c.starts_with("delete") || c.starts_with("create")),
        "the first pass recreated or removed something: {changes:?}"
    );
    // Ready once the lease loop's lease (recorded before it reaches the
    // dataplane) is held and programmed.
    assert!(!dp.status.is_ready(), "no lease recorded yet");
    dp.status.set_lease(&lease(1));
    assert!(dp.status.is_ready());
    let env = std::fs::read_to_string(dir.path().join("subnet.env")).unwrap_or_default();
    assert!(env.contains("FLANNEL_SUBNET=10.244.1.1/24"), "{env}");
    assert!(env.contains("FLANNEL_MTU=1450"), "{env}");
}

/// Each snapshot is the whole truth about the peers: the first programs
/// both peers (route, neighbour, FDB entry each) and tells the status API
/// what it wants; a later one without node3 takes node3 away.
#[test]
fn snapshots_add_and_remove_peers() {
    let (_dir, mut dp) = running(&[2, 3]);
    assert_eq!(
        routes(&dp),
        vec![net("10.244.2.0/24"), net("10.244.3.0/24")]
    );
    let index = vxlan_index(&dp);
    assert_eq!(dp.reconciler.netlink().all_fdb(index).len(), 2);
    let desired = dp
        .status
        .view()
        .desired
        .unwrap_or_else(|| panic!("no desired state"));
    assert_eq!(desired.routes.len(), 2);

    run(dp.pass(&lease(1), &snapshot(2, &[2]))).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(routes(&dp), vec![net("10.244.2.0/24")]);
    assert_eq!(dp.reconciler.netlink().all_neighbours(index).len(), 1);
    assert_eq!(dp.status.view().desired.map(|d| d.routes.len()), Some(1));
}

/// The underlay's MTU changes (a cloud resizes the NIC): the next pass
/// gives the device and subnet.env the new MTU, in place.
#[test]
fn an_underlay_mtu_change_reaches_the_device_and_subnet_env() {
    let (dir, mut dp) = running(&[2]);
    let eth0 = dp.underlay.index;
    run(async {
        use weft_dataplane::reconcile::Kernel as _;
        dp.reconciler.netlink().set_link_mtu(eth0, 9000).await
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(run(dp.refresh_underlay()), "the MTU change went unseen");
    run(dp.pass(&lease(1), &snapshot(1, &[2]))).unwrap_or_else(|e| panic!("{e:#}"));
    let dev = dp
        .reconciler
        .netlink()
        .link("flannel.1")
        .unwrap_or_else(|| panic!("no device"));
    assert_eq!(dev.mtu, 8950);
    let env = std::fs::read_to_string(dir.path().join("subnet.env")).unwrap_or_default();
    assert!(env.contains("FLANNEL_MTU=8950"), "{env}");
}

/// A pass that fails (the kernel refused the device) reports it and
/// forgets the plan it had applied, so the next pass does everything
/// afresh instead of trusting what it last put in.
#[test]
fn a_failed_pass_is_reported_and_the_next_one_recovers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut dp = node1(dir.path(), |_, _| {});
    run(dp.start(&lease(1))).unwrap_or_else(|e| panic!("{e:#}"));
    let index = vxlan_index(&dp);
    run(async {
        use weft_dataplane::reconcile::Kernel as _;
        dp.reconciler.netlink().delete_link(index).await
    })
    .unwrap_or_else(|e| panic!("{e}"));
    dp.reconciler.netlink().fail("create_vxlan", 1);
    let err = run(dp.pass(&lease(1), &snapshot(1, &[2])))
        .err()
        .map(|e| format!("{e:#}"));
    assert!(err.is_some_and(|e| e.contains("create_vxlan")));
    assert!(dp.applied.is_none());
    run(dp.pass(&lease(1), &snapshot(1, &[2]))).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(routes(&dp), vec![net("10.244.2.0/24")]);
    assert!(dp.applied.is_some());
}

/// Gives the fake NIC `eth0` another address, as a DHCP client would.
fn renumber(dp: &Dataplane<FakeKernel>, eth0: u32, addr: &str) {
    run(async {
        use weft_dataplane::reconcile::Kernel as _;
        dp.reconciler.netlink().add_address(eth0, net(addr)).await
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The NIC is renumbered (DHCP gave it another address): the agent sees
/// it at the next read of the underlay, asks the lease to publish the new
/// address (no --public-ip here) and the next pass moves the vxlan
/// device's local address to it, without a restart.
#[test]
fn a_renumbered_interface_is_followed_by_the_lease_and_the_device() {
    let (_dir, mut dp) = running(&[2]);
    let eth0 = dp.underlay.index;
    let new: std::net::Ipv4Addr = "192.0.2.101".parse().unwrap_or_else(|_| unreachable!());
    renumber(&dp, eth0, "192.0.2.101/24");
    assert!(run(dp.refresh_underlay()), "the new address went unseen");
    assert_eq!(dp.underlay.addr_v4, Some(new));
    assert_eq!(dp.renumbered.as_ref().and_then(|p| p.public_ip), Some(new));
    run(dp.pass(&lease(1), &snapshot(1, &[2]))).unwrap_or_else(|e| panic!("{e:#}"));
    let dev = dp
        .reconciler
        .netlink()
        .link("flannel.1")
        .unwrap_or_else(|| panic!("no device"));
    assert_eq!(
        dev.vxlan().and_then(|v| v.local),
        Some(std::net::IpAddr::V4(new))
    );
    assert_eq!(routes(&dp), vec![net("10.244.2.0/24")]);

    // With --public-ip the lease keeps the given address; the device
    // still follows the interface.
    let (_dir, mut dp) = running(&[2]);
    dp.follows_interface.v4 = false;
    renumber(&dp, eth0, "192.0.2.101/24");
    assert!(run(dp.refresh_underlay()));
    assert!(dp.renumbered.is_none());
}

/// An early snapshot (a peer the store says just arrived, ahead of its
/// full snapshot) programs that peer from a plan of it alone and touches
/// nothing else: its route, neighbour and FDB entry, no kernel dump, no
/// removal — the full snapshot's pass follows and finds them in place.
#[test]
fn an_early_snapshot_programs_its_newcomer_and_nothing_else() {
    let (_dir, mut dp) = running(&[2]);
    dp.reconciler.netlink().changes();
    run(dp.pass(&lease(1), &early_snapshot(2, &[2], &[3]))).unwrap_or_else(|e| panic!("{e:#}"));
    let mut changes = dp.reconciler.netlink().changes();
    changes.sort();
    assert_eq!(
        changes,
        vec![
            "replace_fdb 02:42:00:00:00:03 192.0.2.3",
            "replace_neighbour 10.244.3.0 02:42:00:00:00:03",
            "replace_route 10.244.3.0/24",
        ]
    );
    assert_eq!(
        routes(&dp),
        vec![net("10.244.2.0/24"), net("10.244.3.0/24")]
    );
    run(dp.pass(&lease(1), &snapshot(3, &[2, 3]))).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        routes(&dp),
        vec![net("10.244.2.0/24"), net("10.244.3.0/24")]
    );
    assert_eq!(dp.status.view().desired.map(|d| d.routes.len()), Some(2));

    // Before the first full pass there are no devices to add to: the
    // newcomer waits for that pass.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fresh = node1(dir.path(), |_, _| {});
    run(fresh.add_arrivals(&lease(1), &early_snapshot(1, &[], &[3])));
    assert_eq!(fresh.reconciler.netlink().changes(), Vec::<String>::new());
}
