//! The planner against flannel's documented behaviour (flannel-compat §3)
//! and the state captured from a real flannel node (flannel-golden), one
//! file per backend; the node and peers they plan for are built here.

mod ipsec;
mod offload;
mod routed;
mod vxlan;
mod wireguard;

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::backend_data::{VxlanData, WireguardData};
use crate::lease::RawJson;
use crate::test_leases::{cfg, dual, v4, v4_lease};
use crate::wg_key::WgKey;

/// The cluster config of a dual-stack test, with `backend` as the
/// `Backend` object.
fn dual_cfg(backend: &str) -> NetConfig {
    cfg(&format!(
        r#"{{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{backend}}}"#
    ))
}

fn underlay() -> Underlay {
    Underlay {
        index: 2,
        name: "eth0".into(),
        mtu: 1500,
        addr_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        addr_v6: Some("2001:db8::1".parse().unwrap()),
        connected: vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
        ],
        driver: Some("virtio_net".into()),
    }
}

/// A kernel with the #1279 fix: vxlan keeps TX checksum offload on.
const KERNEL: &str = "6.1.0-28-amd64";

/// This node's subnet in the IPv4 tests.
fn own() -> LeaseSubnets {
    v4("10.244.6.0/24")
}

/// This node's subnets in the dual-stack tests.
fn dual_own() -> LeaseSubnets {
    dual("10.244.6.0/24", "fd00:10:244:6::/64")
}

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

fn local() -> LocalIdentity {
    LocalIdentity {
        vtep_mac_v4: Some(mac("1e:1f:68:f0:dd:61")),
        vtep_mac_v6: Some(mac("1e:1f:68:f0:dd:62")),
    }
}

fn vxlan_peer(subnet: &str, ip: &str, vtep: &str) -> (String, Lease) {
    let data = VxlanData {
        vni: 1,
        vtep_mac: mac(vtep),
    };
    (
        format!("/coreos.com/network/subnets/{}", subnet.replace('/', "-")),
        v4_lease(subnet, ip, "vxlan", Some(data.encode())),
    )
}

fn routed_peer(subnet: &str, ip: &str, kind: &str) -> (String, Lease) {
    let (id, mut lease) = vxlan_peer(subnet, ip, "02:00:00:00:00:01");
    lease.attrs.backend_type = kind.into();
    lease.attrs.backend_data = None;
    (id, lease)
}

fn wg_data(key: u8, port: u16) -> RawJson {
    WireguardData {
        public_key: WgKey([key; 32]),
        port,
    }
    .encode()
}

/// `peer` made dual-stack: subnet fd00:10:244:1::/64 at 2001:db8::2, with
/// `v6_data` as its IPv6 backend data.
fn with_v6((id, mut lease): (String, Lease), v6_data: Option<RawJson>) -> (String, Lease) {
    lease.subnets.v6 = Some("fd00:10:244:1::/64".parse().unwrap());
    lease.attrs.public_ipv6 = Some("2001:db8::2".parse().unwrap());
    lease.attrs.backend_v6_data = v6_data;
    (id, lease)
}

fn plan_on(
    c: &NetConfig,
    own: &LeaseSubnets,
    peers: &[(String, Lease)],
    u: &Underlay,
    blackhole: bool,
) -> Result<Desired, PlanError> {
    plan(&PlanInput {
        cfg: c,
        own,
        underlay: u,
        local: &local(),
        peers,
        blackhole,
        kernel_release: KERNEL,
    })
}

/// The plan of this IPv4 node.
fn run(c: &NetConfig, peers: &[(String, Lease)], u: &Underlay) -> Result<Desired, PlanError> {
    plan_on(c, &own(), peers, u, false)
}

/// The plan of this node made dual-stack.
fn run_dual(c: &NetConfig, peers: &[(String, Lease)]) -> Desired {
    plan_on(c, &dual_own(), peers, &underlay(), false).unwrap()
}

fn device_names(d: &Desired) -> Vec<&str> {
    d.devices.iter().map(|x| x.name()).collect()
}

fn via(gateway: &str, dev: Dev, onlink: bool) -> RouteTarget {
    RouteTarget::Via {
        gateway: gateway.parse().unwrap(),
        dev,
        onlink,
    }
}
