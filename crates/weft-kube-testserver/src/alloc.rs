//! podCIDR allocation as kube-controller-manager's range allocator does it
//! (`--allocate-node-cidrs --cluster-cidr=… --node-cidr-mask-size=…`,
//! `pkg/controller/nodeipam/ipam/cidrset`): the cluster CIDR is cut into
//! blocks of the mask size, handed out in order starting with the first
//! block, the search resuming after the last one given; a deleted node's
//! block is released. In dual-stack, each node gets one block per family,
//! IPv4 first (`spec.podCIDRs`).

use std::collections::BTreeSet;

use ipnet::IpNet;

/// One family's cluster CIDR and its blocks.
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: IpNet,
    mask: u8,
    used: BTreeSet<u128>,
    next: u128,
}

/// Why a cluster CIDR and mask size cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error(
        "--node-cidr-mask-size {mask} must be between the cluster CIDR's /{cluster} and /{max}"
    )]
    BadMask { mask: u8, cluster: u8, max: u8 },
    #[error("no podCIDR left in {0}: every block is taken")]
    Exhausted(IpNet),
}

impl CidrSet {
    pub fn new(cluster: IpNet, mask: u8) -> Result<CidrSet, AllocError> {
        let cluster = cluster.trunc();
        let max = cluster.max_prefix_len();
        // cidrset refuses more than 2^16 blocks' worth of bitmap too; the
        // limit here only keeps the counter in range.
        if mask < cluster.prefix_len() || mask > max || mask - cluster.prefix_len() > 64 {
            return Err(AllocError::BadMask {
                mask,
                cluster: cluster.prefix_len(),
                max,
            });
        }
        Ok(CidrSet {
            cluster,
            mask,
            used: BTreeSet::new(),
            next: 0,
        })
    }

    fn count(&self) -> u128 {
        1u128 << (self.mask - self.cluster.prefix_len())
    }

    fn block(&self, index: u128) -> Option<IpNet> {
        let shift = u32::from(self.cluster.max_prefix_len() - self.mask);
        let base = addr_u128(self.cluster);
        let addr = base.checked_add(index.checked_shl(shift)?)?;
        let ip = match self.cluster {
            IpNet::V4(_) => std::net::IpAddr::V4(u32::try_from(addr).ok()?.into()),
            IpNet::V6(_) => std::net::IpAddr::V6(addr.into()),
        };
        IpNet::new(ip, self.mask).ok()
    }

    fn index_of(&self, net: IpNet) -> Option<u128> {
        if net.prefix_len() != self.mask || !self.cluster.contains(&net) {
            return None;
        }
        let shift = u32::from(self.cluster.max_prefix_len() - self.mask);
        Some((addr_u128(net) - addr_u128(self.cluster)) >> shift)
    }

    /// The next free block.
    pub fn allocate(&mut self) -> Result<IpNet, AllocError> {
        let count = self.count();
        for step in 0..count {
            let index = (self.next + step) % count;
            if !self.used.contains(&index) {
                self.used.insert(index);
                self.next = (index + 1) % count;
                return self.block(index).ok_or(AllocError::Exhausted(self.cluster));
            }
        }
        Err(AllocError::Exhausted(self.cluster))
    }

    /// Marks a block as taken (a node registered with its own podCIDR).
    pub fn occupy(&mut self, net: IpNet) {
        if let Some(i) = self.index_of(net) {
            self.used.insert(i);
        }
    }

    /// Gives a deleted node's block back.
    pub fn release(&mut self, net: IpNet) {
        if let Some(i) = self.index_of(net) {
            self.used.remove(&i);
        }
    }

    pub fn family_matches(&self, net: &IpNet) -> bool {
        matches!(
            (self.cluster, net),
            (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
        )
    }
}

fn addr_u128(net: IpNet) -> u128 {
    match net.addr() {
        std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_blocks_in_order_from_the_first() {
        let mut set = CidrSet::new("10.244.0.0/16".parse().unwrap(), 24).unwrap();
        assert_eq!(set.allocate().unwrap().to_string(), "10.244.0.0/24");
        assert_eq!(set.allocate().unwrap().to_string(), "10.244.1.0/24");
        set.release("10.244.0.0/24".parse().unwrap());
        // The search resumes after the last block given, as cidrset does.
        assert_eq!(set.allocate().unwrap().to_string(), "10.244.2.0/24");
    }

    #[test]
    fn ipv6_and_exhaustion() {
        let mut set = CidrSet::new("fd00:10:244::/63".parse().unwrap(), 64).unwrap();
        assert_eq!(set.allocate().unwrap().to_string(), "fd00:10:244::/64");
        assert_eq!(set.allocate().unwrap().to_string(), "fd00:10:244:1::/64");
        assert!(matches!(set.allocate(), Err(AllocError::Exhausted(_))));
        assert!(CidrSet::new("10.0.0.0/24".parse().unwrap(), 16).is_err());
    }
}
