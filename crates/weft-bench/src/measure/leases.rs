//! Synthetic peers for the control-plane benchmark: K leases that look
//! exactly like flannel's vxlan leases, in a cluster network big enough
//! for 10 000 nodes.
//!
//! Peer `i` holds `10.1.0.0/24 + i` (so up to 10.255.x), publishes the
//! public IP `172.16.0.0 + i + 1` (nothing answers there: the agent only
//! programs entries, it never contacts a vxlan peer) and a VTEP MAC made
//! from `i`. The agent's own subnet stays in 10.244.0.0/16 (from the
//! lab's first start), outside every synthetic subnet up to i = 62 000.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use weft_core::backend_data::VxlanData;
use weft_core::etcd_key;
use weft_core::lease::{LeaseAttrs, LeaseSubnets};
use weft_core::mac::Mac;

/// The cluster network of the scale lab: room for 65 536 /24 subnets.
pub const NET_CONF: &str = r#"{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

/// Indexes of the one-off leases of the latency samples: far above any K.
pub const SAMPLE_BASE: u32 = 50_000;

/// One synthetic peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub public: Ipv4Addr,
    pub mac: Mac,
}

impl Peer {
    pub fn new(i: u32) -> Peer {
        let net = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + (i << 8));
        let b = i.to_be_bytes();
        Peer {
            // A /24 prefix length is always valid.
            subnet: Ipv4Net::new(net, 24).unwrap_or_default(),
            public: Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i + 1),
            mac: Mac([0x0e, 0x2a, b[0], b[1], b[2], b[3]]),
        }
    }

    /// flannel's vxlan route: via the peer's VTEP address, which is its
    /// subnet's network address.
    pub fn gateway(&self) -> IpAddr {
        IpAddr::V4(self.subnet.network())
    }

    /// An address inside the subnet, for `ip route get`-style lookups.
    pub fn probe(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(u32::from(self.subnet.network()) + 1))
    }

    pub fn net(&self) -> IpNet {
        IpNet::V4(self.subnet)
    }

    pub fn key(&self) -> String {
        etcd_key::lease_key(
            etcd_key::DEFAULT_PREFIX,
            &LeaseSubnets {
                v4: Some(self.subnet),
                v6: None,
            },
        )
    }

    /// The lease value as flanneld writes it.
    pub fn value(&self) -> String {
        LeaseAttrs {
            public_ip: Some(self.public),
            public_ipv6: None,
            backend_type: "vxlan".to_owned(),
            backend_data: Some(
                VxlanData {
                    vni: 1,
                    vtep_mac: self.mac,
                }
                .encode(),
            ),
            backend_v6_data: None,
        }
        .to_json()
    }
}

/// A lease every agent skips (another backend's type): rewriting it makes
/// the agent run a reconcile pass with nothing to change in the kernel.
pub fn rejected() -> (String, String) {
    let p = Peer::new(SAMPLE_BASE - 1);
    let value = LeaseAttrs {
        public_ip: Some(p.public),
        public_ipv6: None,
        backend_type: "host-gw".to_owned(),
        backend_data: None,
        backend_v6_data: None,
    }
    .to_json();
    (p.key(), value)
}

/// Whether any of peers `0..k` (or the samples) overlaps `own`: the
/// benchmark refuses to run rather than count a rejected peer as missing.
pub fn collides(own: IpNet, k: u32) -> bool {
    let own_v4 = match own {
        IpNet::V4(n) => n,
        IpNet::V6(_) => return false,
    };
    let hit = |i: u32| Peer::new(i).subnet == own_v4;
    (0..k).any(hit) || (SAMPLE_BASE - 1..SAMPLE_BASE + 200).any(hit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_flannel_leases() {
        let p = Peer::new(257);
        assert_eq!(p.subnet.to_string(), "10.2.1.0/24");
        assert_eq!(p.public.to_string(), "172.16.1.2");
        assert_eq!(p.key(), "/coreos.com/network/subnets/10.2.1.0-24");
        assert_eq!(
            p.value(),
            r#"{"PublicIP":"172.16.1.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:2a:00:00:01:01"}}"#
        );
        assert!(Peer::new(10_000).subnet.to_string().starts_with("10.40."));
        assert!(!collides("10.244.3.0/24".parse().unwrap(), 10_000));
        assert!(collides("10.1.5.0/24".parse().unwrap(), 10));
    }
}
