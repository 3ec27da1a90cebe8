//! Leases for the unit tests that screen and plan peers, built in one place
//! so that every test's peer has the same shape and a change to [`Lease`]
//! is made once.

use crate::lease::{Lease, LeaseAttrs, LeaseSubnets, RawJson};
use crate::netconf::{self, NetConfig};

/// The IPv4 cluster most tests run: 10.244.0.0/16 over vxlan.
pub(crate) const VXLAN_V4: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

pub(crate) fn cfg(json: &str) -> NetConfig {
    netconf::parse(json).unwrap()
}

/// An IPv4-only lease's subnets.
pub(crate) fn v4(subnet: &str) -> LeaseSubnets {
    LeaseSubnets {
        v4: Some(subnet.parse().unwrap()),
        v6: None,
    }
}

/// A dual-stack lease's subnets.
pub(crate) fn dual(subnet: &str, subnet_v6: &str) -> LeaseSubnets {
    LeaseSubnets {
        v6: Some(subnet_v6.parse().unwrap()),
        ..v4(subnet)
    }
}

/// An IPv4 peer's lease: one subnet, one public IP, its backend's data.
pub(crate) fn v4_lease(subnet: &str, ip: &str, backend: &str, data: Option<RawJson>) -> Lease {
    Lease {
        subnets: v4(subnet),
        attrs: LeaseAttrs {
            public_ip: Some(ip.parse().unwrap()),
            backend_type: backend.to_owned(),
            backend_data: data,
            ..LeaseAttrs::default()
        },
        expiration: None,
    }
}
