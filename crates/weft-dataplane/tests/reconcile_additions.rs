//! The reconciler's fast path for new peers (`apply_additions`) against a
//! real kernel: it installs exactly what a plan adds, in a fresh network
//! namespace, and the full pass that follows finds nothing left to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::netns::{in_new_netns, ip, underlay};
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
    }
}

fn desired(c: &NetConfig, ul: &Underlay, peers: &[(String, Lease)]) -> Desired {
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
    })
    .unwrap()
}

fn node(index: u32) -> NodeContext {
    NodeContext {
        underlay_index: index,
        cluster_networks: vec!["10.244.0.0/16".parse().unwrap()],
    }
}

const VXLAN: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

#[test]
fn additions_go_in_first_and_the_full_pass_has_nothing_left() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        let ul = node_underlay(underlay(&nl).await?, 1500);
        let rec = Reconciler::new(nl);
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
