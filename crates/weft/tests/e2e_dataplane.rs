//! End to end, per backend, in a lab of real agents and CNI-made pods:
//! the pod matrix, a departed node cleaned up, an agent killed under load
//! without a lost packet, tampering repaired, the pod MTU honest, and
//! masquerade to the outside.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestLab, nftables_masq, require_root, scenarios};
use weft_lab::Backend;

/// A lab for one scenario (a failure saying how to run it without root).
fn lab(name: &str, backend: Backend, agent_args: &[&str]) -> TestLab {
    require_root();
    TestLab::up(name, backend, agent_args)
}

macro_rules! suite {
    ($module:ident, $backend:expr, $tag:literal, $mtu:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn pod_matrix_passes() {
                let lab = lab(concat!("e2m", $tag), $backend, &[]);
                lab.assert_matrix();
            }

            #[test]
            fn departed_node_leaves_every_other_node() {
                let mut lab = lab(concat!("e2d", $tag), $backend, &[]);
                scenarios::departed_node_is_cleaned_up(&mut lab, $backend);
            }

            #[test]
            fn agent_killed_under_load_loses_nothing() {
                let mut lab = lab(concat!("e2k", $tag), $backend, &[]);
                scenarios::agent_killed_under_load_loses_nothing(&mut lab);
            }

            #[test]
            fn tampering_is_repaired() {
                let lab = lab(concat!("e2t", $tag), $backend, &[]);
                scenarios::tampering_is_repaired(&lab, $backend);
            }

            #[test]
            fn sigterm_leaves_the_dataplane_in_place() {
                let mut lab = lab(concat!("e2g", $tag), $backend, &[]);
                scenarios::sigterm_leaves_the_dataplane_in_place(&mut lab, $backend);
            }

            #[test]
            fn pod_mtu_is_honest() {
                let lab = lab(concat!("e2u", $tag), $backend, &[]);
                scenarios::pod_mtu_is_honest(&lab, $mtu);
            }

            #[test]
            fn masquerade_reaches_the_outside_as_the_node() {
                let lab = lab(concat!("e2q", $tag), $backend, &["--ip-masq"]);
                scenarios::masquerade_to_outside(&lab);
            }
        }
    };
}

suite!(vxlan, Backend::Vxlan, "vx", 1450);
suite!(host_gw, Backend::HostGw, "hg", 1500);

#[test]
fn nftables_rules_have_flannels_tables() {
    require_root();
    let lab = TestLab::up_with("e2nft", Backend::Vxlan, nftables_masq);
    let ruleset = lab.ok("node1", &["nft", "list", "ruleset"]);
    for want in [
        "table ip flannel-ipv4",
        "chain postrtg",
        "chain forward",
        "masquerade fully-random",
        "meta mark 0x00004000 return",
    ] {
        assert!(ruleset.contains(want), "{want} missing:\n{ruleset}");
    }
    assert!(
        !lab.ok("node1", &["iptables-save", "-t", "nat"])
            .contains("FLANNEL-POSTRTG")
    );
    lab.assert_matrix();
}

#[test]
fn ipip_on_a_kernel_without_ipip_fails_clearly() {
    require_root();
    let mut spec = weft_lab::LabSpec::new("e2ip").unwrap();
    spec.backend = Backend::Ipip;
    spec.nodes = 1;
    spec.pods_per_node = 0;
    let _ = weft_lab::Lab::down_by_name("e2ip");
    match weft_lab::Lab::up(&spec) {
        // This kernel has ipip after all: then it must carry traffic.
        Ok(lab) => TestLab::adopt(lab).assert_matrix(),
        Err(e) => {
            let text = e.to_string();
            let _ = weft_lab::Lab::down_by_name("e2ip");
            assert!(text.contains("ipip"), "{text}");
        }
    }
}
