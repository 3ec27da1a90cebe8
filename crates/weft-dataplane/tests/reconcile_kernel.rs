//! The reconciler against a real kernel, each test in a fresh network
//! namespace: what it programs (read back with `ip` and `bridge`), that a
//! second pass changes nothing, that it adopts, repairs and cleans up, and
//! that its fast path for new peers (`apply_additions`) installs exactly
//! what a plan adds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::netns::{in_new_netns, ip, run, underlay};
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::{self, NetConfig};
use weft_core::plan::{self, Desired, LocalIdentity, PlanInput, Underlay};
use weft_dataplane::netlink::Netlink;
use weft_dataplane::reconcile::{NodeContext, Reconciler};

fn cfg(json: &str) -> NetConfig {
    netconf::parse(json).unwrap()
}

fn own() -> LeaseSubnets {
    LeaseSubnets {
        v4: Some("10.244.6.0/24".parse().unwrap()),
        v6: None,
    }
}

fn peer(n: u8, backend: &str) -> (String, Lease) {
    let subnet = format!("10.244.{n}.0/24");
    let data = weft_core::backend_data::VxlanData {
        vni: 1,
        vtep_mac: format!("2e:1d:8b:97:dc:{n:02x}").parse().unwrap(),
    };
    (
        format!("peer{n}"),
        Lease {
            subnets: LeaseSubnets {
                v4: Some(subnet.parse().unwrap()),
                v6: None,
            },
            attrs: LeaseAttrs {
                public_ip: Some(format!("192.0.2.{n}").parse().unwrap()),
                backend_type: backend.into(),
                backend_data: (backend == "vxlan").then(|| data.encode()),
                ..Default::default()
            },
            expiration: None,
        },
    )
}

fn node_underlay(index: u32, mtu: u32) -> Underlay {
    Underlay {
        index,
        name: "eth0".into(),
        mtu,
        addr_v4: Some("192.0.2.1".parse().unwrap()),
        addr_v6: None,
        connected: vec!["192.0.2.0/24".parse().unwrap()],
        driver: Some("veth".into()),
    }
}

/// A kernel with the #1279 fix: vxlan keeps TX checksum offload on.
const KERNEL: &str = "6.1.0-28-amd64";

fn desired(c: &NetConfig, ul: &Underlay, peers: &[(String, Lease)]) -> Desired {
    desired_on(KERNEL, c, ul, peers)
}

/// The plan of a node running kernel `release`.
fn desired_on(release: &str, c: &NetConfig, ul: &Underlay, peers: &[(String, Lease)]) -> Desired {
    plan::plan(&PlanInput {
        cfg: c,
        own: &own(),
        underlay: ul,
        local: &LocalIdentity {
            vtep_mac_v4: Some("1e:1f:68:f0:dd:61".parse().unwrap()),
            vtep_mac_v6: None,
        },
        peers,
        blackhole: false,
        kernel_release: release,
    })
    .unwrap()
}

fn node(index: u32) -> NodeContext {
    NodeContext {
        underlay_index: index,
        cluster_networks: vec!["10.244.0.0/16".parse().unwrap()],
    }
}

/// A node in this namespace: its underlay (eth0, MTU 1500) and a
/// reconciler on its own netlink connection.
async fn a_node() -> anyhow::Result<(Reconciler<Netlink>, Underlay)> {
    let nl = Netlink::connect()?;
    let ul = node_underlay(underlay(&nl).await?, 1500);
    Ok((Reconciler::new(nl), ul))
}

const VXLAN: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

#[test]
fn vxlan_state_is_programmed_exactly_and_idempotently() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let peers = [peer(2, "vxlan"), peer(3, "vxlan")];
        let d = desired(&cfg(VXLAN), &ul, &peers);
        let first = rec.apply(&d, &node(ul.index)).await?;
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(
            (first.routes_set, first.neighbours_set, first.fdb_set),
            (2, 2, 2),
            "{first}"
        );

        let link = ip(&["-d", "link", "show", "flannel.1"])?;
        for want in [
            "mtu 1450",
            "vxlan id 1 local 192.0.2.1 dev eth0",
            "dstport 8472",
            "nolearning",
            "1e:1f:68:f0:dd:61",
        ] {
            assert!(link.contains(want), "{want} missing from {link}");
        }
        assert!(ip(&["addr", "show", "flannel.1"])?.contains("inet 10.244.6.0/32"));
        let routes = ip(&["route", "show", "proto", "87"])?;
        assert!(
            routes.contains("10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"),
            "{routes}"
        );
        let neigh = ip(&["neigh", "show", "dev", "flannel.1"])?;
        assert!(
            neigh.contains("10.244.3.0 lladdr 2e:1d:8b:97:dc:03 PERMANENT"),
            "{neigh}"
        );
        let fdb = run("bridge", &["fdb", "show", "dev", "flannel.1"])?;
        assert!(
            fdb.contains("2e:1d:8b:97:dc:02 dst 192.0.2.2 self permanent"),
            "{fdb}"
        );
        assert_eq!(tx_checksum_says(), "tx-checksum-ip-generic: on");

        let second = rec.apply(&d, &node(ul.index)).await?;
        assert_eq!(
            second.changes(),
            0,
            "a second pass must change nothing: {second}"
        );
        Ok(())
    });
}

/// `ethtool -k flannel.1`'s line for the feature flannel #1279 is about.
fn tx_checksum_says() -> String {
    let out = run("ethtool", &["-k", "flannel.1"]).expect(
        "needs ethtool to read the device back: apt-get install -y ethtool (scripts/install-deps.sh does)",
    );
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("tx-checksum-ip-generic:"))
        .unwrap_or_default()
        .to_owned()
}

/// TX checksum offload follows the decision on an existing device: on by
/// default on a fixed kernel, off when net-conf says false, off when the
/// node's kernel predates the fix, on again when net-conf says true.
#[test]
fn tx_checksum_offload_follows_net_conf_and_the_kernel() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let off = cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","TxChecksumOffload":false}}"#,
        );
        let on = cfg(
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","TxChecksumOffload":true}}"#,
        );
        for (release, c, want) in [
            (KERNEL, &cfg(VXLAN), "on"),
            (KERNEL, &off, "off"),
            (KERNEL, &cfg(VXLAN), "on"),
            ("5.4.0-42-generic", &cfg(VXLAN), "off"),
            ("5.4.0-42-generic", &on, "on"),
        ] {
            let r = rec
                .apply(&desired_on(release, c, &ul, &[]), &node(ul.index))
                .await?;
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            assert_eq!(
                tx_checksum_says(),
                format!("tx-checksum-ip-generic: {want}"),
                "kernel {release}, {:?}",
                c.backend
            );
        }
        Ok(())
    });
}

#[test]
fn departed_peers_are_removed_and_new_ones_added() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let c = cfg(VXLAN);
        rec.apply(
            &desired(&c, &ul, &[peer(2, "vxlan"), peer(3, "vxlan")]),
            &node(ul.index),
        )
        .await?;
        let r = rec
            .apply(
                &desired(&c, &ul, &[peer(3, "vxlan"), peer(4, "vxlan")]),
                &node(ul.index),
            )
            .await?;
        assert_eq!(
            (r.routes_deleted, r.neighbours_deleted, r.fdb_deleted),
            (1, 1, 1),
            "{r}"
        );
        assert_eq!(
            (r.routes_set, r.neighbours_set, r.fdb_set),
            (1, 1, 1),
            "{r}"
        );
        let routes = ip(&["route"])?;
        assert!(
            !routes.contains("10.244.2.0/24") && routes.contains("10.244.4.0/24"),
            "{routes}"
        );
        assert!(!ip(&["neigh", "show", "dev", "flannel.1"])?.contains("10.244.2.0"));
        assert!(!run("bridge", &["fdb", "show", "dev", "flannel.1"])?.contains("dc:02"));
        Ok(())
    });
}

#[test]
fn deleted_device_is_recreated_with_every_peer() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let d = desired(&cfg(VXLAN), &ul, &[peer(2, "vxlan"), peer(3, "vxlan")]);
        rec.apply(&d, &node(ul.index)).await?;
        ip(&["link", "del", "flannel.1"])?;
        let r = rec.apply(&d, &node(ul.index)).await?;
        assert_eq!(r.devices_created, 1, "{r}");
        assert_eq!(
            (r.routes_set, r.neighbours_set, r.fdb_set),
            (2, 2, 2),
            "{r}"
        );
        assert!(ip(&["route"])?.contains("10.244.3.0/24 via 10.244.3.0 dev flannel.1"));
        Ok(())
    });
}

#[test]
fn mtu_change_reaches_the_existing_device() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let index = ul.index;
        let c = cfg(VXLAN);
        rec.apply(&desired(&c, &ul, &[]), &node(index)).await?;
        ip(&["link", "set", "eth0", "mtu", "1400"])?;
        let d = desired(&c, &node_underlay(index, 1400), &[]);
        assert_eq!(d.mtu, 1350);
        let r = rec.apply(&d, &node(index)).await?;
        assert_eq!((r.devices_updated, r.devices_recreated), (1, 0), "{r}");
        assert!(ip(&["link", "show", "flannel.1"])?.contains("mtu 1350"));
        Ok(())
    });
}

#[test]
fn flannel_routes_are_adopted_and_strangers_left_alone() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let index = ul.index;
        let c = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
        // What a flannel host-gw node left: one route still wanted, one for a
        // peer that left while no agent ran, and a route nobody in the
        // cluster owns.
        ip(&[
            "route",
            "add",
            "10.244.2.0/24",
            "via",
            "192.0.2.2",
            "proto",
            "boot",
        ])?;
        ip(&[
            "route",
            "add",
            "10.244.9.0/24",
            "via",
            "192.0.2.9",
            "proto",
            "boot",
        ])?;
        ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.254"])?;
        let r = rec
            .apply(&desired(&c, &ul, &[peer(2, "host-gw")]), &node(index))
            .await?;
        assert_eq!((r.routes_set, r.routes_deleted), (1, 1), "{r}");
        let routes = ip(&["route"])?;
        assert!(
            routes.contains("10.244.2.0/24 via 192.0.2.2 dev eth0 proto 87"),
            "{routes}"
        );
        assert!(
            !routes.contains("10.244.9.0"),
            "stale flannel route kept: {routes}"
        );
        assert!(
            routes.contains("198.51.100.0/24 via 192.0.2.254"),
            "a stranger's route was touched: {routes}"
        );
        Ok(())
    });
}

#[test]
fn stray_entries_on_our_device_are_cleaned() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let d = desired(&cfg(VXLAN), &ul, &[peer(2, "vxlan")]);
        rec.apply(&d, &node(ul.index)).await?;
        ip(&[
            "neigh",
            "add",
            "10.244.50.0",
            "lladdr",
            "02:00:00:00:00:50",
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ])?;
        run(
            "bridge",
            &[
                "fdb",
                "add",
                "02:00:00:00:00:50",
                "dev",
                "flannel.1",
                "dst",
                "192.0.2.50",
                "self",
                "permanent",
            ],
        )?;
        ip(&["addr", "add", "10.244.50.1/24", "dev", "flannel.1"])?;
        let r = rec.apply(&d, &node(ul.index)).await?;
        assert_eq!(
            (r.neighbours_deleted, r.fdb_deleted, r.addresses_changed),
            (1, 1, 1),
            "{r}"
        );
        assert!(!ip(&["addr", "show", "flannel.1"])?.contains("10.244.50.1"));
        Ok(())
    });
}

#[test]
fn backend_change_removes_the_old_device_and_blackhole_is_kept() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        rec.apply(
            &desired(&cfg(VXLAN), &ul, &[peer(2, "vxlan")]),
            &node(ul.index),
        )
        .await?;
        let hg = cfg(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
        let mut d = desired(&hg, &ul, &[peer(2, "host-gw")]);
        d.routes.push(weft_core::plan::RoutePlan {
            dst: "10.244.6.0/24".parse()?,
            target: weft_core::plan::RouteTarget::Blackhole,
        });
        let r = rec.apply(&d, &node(ul.index)).await?;
        assert_eq!(r.devices_deleted, 1, "{r}");
        let routes = ip(&["route"])?;
        assert!(
            routes.contains("blackhole 10.244.6.0/24 proto 87"),
            "{routes}"
        );
        assert!(
            routes.contains("10.244.2.0/24 via 192.0.2.2 dev eth0 proto 87"),
            "{routes}"
        );
        assert!(
            ip(&["link", "show", "flannel.1"]).is_err(),
            "flannel.1 should be gone"
        );
        // and the blackhole survives a second pass untouched
        assert_eq!(rec.apply(&d, &node(ul.index)).await?.changes(), 0);
        Ok(())
    });
}

/// The fast path: what a plan adds goes in first, and the full pass that
/// follows finds nothing left to do.
#[test]
fn additions_go_in_first_and_the_full_pass_has_nothing_left() {
    in_new_netns(|| async {
        let (rec, ul) = a_node().await?;
        let before = desired(&cfg(VXLAN), &ul, &[peer(2, "vxlan")]);
        rec.apply(&before, &node(ul.index)).await?;
        let after = desired(&cfg(VXLAN), &ul, &[peer(2, "vxlan"), peer(3, "vxlan")]);

        let fast = rec
            .apply_additions(&before, &after, &node(ul.index))
            .await?;
        assert_eq!(
            (fast.routes_set, fast.neighbours_set, fast.fdb_set),
            (1, 1, 1),
            "{fast}"
        );
        assert!(
            ip(&["route"])?.contains("10.244.3.0/24 via 10.244.3.0 dev flannel.1 proto 87 onlink")
        );
        assert!(
            ip(&["neigh", "show", "dev", "flannel.1"])?
                .contains("10.244.3.0 lladdr 2e:1d:8b:97:dc:03")
        );

        let full = rec.apply(&after, &node(ul.index)).await?;
        assert_eq!(full.changes(), 0, "{full}");

        // Nothing new: nothing sent. A device change is left to the full pass.
        let again = rec.apply_additions(&after, &after, &node(ul.index)).await?;
        assert_eq!(again.changes(), 0);
        let mut other = after.clone();
        other.devices.clear();
        let skipped = rec.apply_additions(&other, &after, &node(ul.index)).await?;
        assert_eq!(skipped.changes(), 0);
        Ok(())
    });
}
