//! ipsec across clouds behind 1:1 NAT (issue 24): with `"UDPEncap": true`
//! IKE and ESP ride UDP through the routers' NAT (NAT-T), as docs/
//! multicloud.md says; without it bare ESP would have to cross the NAT.

use std::time::Duration;

use weft_lab::Backend;

use super::common::{TestLab, lab_exec_ok};
use super::helpers::{READY_WITHIN, wait_for_tunnels};

/// 2 clouds of one node each (`weft lab up --clouds 2`): the tunnel comes
/// up through both NATs, its SAs are UDP-encapsulated, and the pods reach
/// each other.
#[test]
#[ignore = "needs the Debian-kernel VM: scripts/vm-test.sh runs it"]
fn ipsec_with_udp_encap_crosses_clouds_behind_nat() {
    let lab = TestLab::up_with("vic", Backend::Ipsec, |spec| {
        spec.ready_timeout = READY_WITHIN;
        spec.nodes = 2;
        spec.clouds = 2;
        spec.backend_options
            .insert("UDPEncap".into(), serde_json::Value::Bool(true));
    });
    for node in ["node1", "node2"] {
        wait_for_tunnels(&lab, node, 1, Duration::from_secs(90));
    }
    lab.assert_matrix();
    let states = lab_exec_ok(&lab, "node1", &["ip", "xfrm", "state"]);
    assert!(states.contains("encap type espinudp"), "{states}");
}
