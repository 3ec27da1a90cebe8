//! Choosing a free subnet for a node.
//!
//! The pool is every SubnetLen-sized block from SubnetMin to SubnetMax. The
//! search costs O(t log t) in the number of taken subnets `t` and never
//! depends on the size of the pool: an IPv6 /32 cut into /64s has 2^32
//! candidates and is never enumerated.

use ipnet::IpNet;

use crate::netconf::SubnetPool;
use crate::prefix::{self, Family};

/// How many free candidates the random choice is drawn from. flannel draws
/// from the first 100 free subnets after SubnetMin: allocation stays low in
/// the pool (easy to read) while agents that start together rarely pick the
/// same subnet.
pub const CANDIDATES: u128 = 100;

/// Picks a free subnet of `pool`, or `None` when every subnet is taken.
///
/// `taken` may hold prefixes of any length and family; those of the other
/// family are ignored, and one that covers part of a block makes the whole
/// block unavailable. `random` chooses among the first [`CANDIDATES`] free
/// blocks; the caller supplies it so that this function stays pure.
pub fn choose_free(pool: &SubnetPool, taken: &[IpNet], random: u64) -> Option<IpNet> {
    let free = first_free_slots(pool, taken, CANDIDATES);
    if free.is_empty() {
        return None;
    }
    let pick = free[(u128::from(random) % free.len() as u128) as usize];
    slot_net(pool, pick)
}

/// True when `candidate` belongs to the pool and overlaps nothing taken.
pub fn is_free(pool: &SubnetPool, taken: &[IpNet], candidate: IpNet) -> bool {
    pool.holds_subnet(candidate) && !taken.iter().any(|t| prefix::overlaps(*t, candidate))
}

struct Geometry {
    family: Family,
    lo: u128,
    step: u128,
    /// Index of the last slot (slots are numbered from 0 at SubnetMin).
    last: u128,
}

fn geometry(pool: &SubnetPool) -> Option<Geometry> {
    let family = pool.family();
    let step = prefix::block_size(family, pool.subnet_len)?;
    let lo = prefix::addr_to_u128(pool.subnet_min);
    let hi = prefix::addr_to_u128(pool.subnet_max);
    if hi < lo || step == 0 {
        return None;
    }
    Some(Geometry {
        family,
        lo,
        step,
        last: (hi - lo) / step,
    })
}

fn slot_net(pool: &SubnetPool, slot: u128) -> Option<IpNet> {
    let g = geometry(pool)?;
    let start = g.lo.checked_add(slot.checked_mul(g.step)?)?;
    IpNet::new(prefix::u128_to_addr(g.family, start), pool.subnet_len).ok()
}

/// Slot ranges `[first, last]` made unavailable by the taken prefixes,
/// sorted and merged.
fn blocked_ranges(g: &Geometry, taken: &[IpNet]) -> Vec<(u128, u128)> {
    // The pool spans [lo, end]; end never overflows because the last slot
    // ends inside the address space.
    let end = g.lo + g.last * g.step + (g.step - 1);
    let mut ranges: Vec<(u128, u128)> = taken
        .iter()
        .filter(|t| Family::of_net(**t) == g.family)
        .filter_map(|t| {
            let (a, b) = prefix::bounds(*t);
            if b < g.lo || a > end {
                return None;
            }
            let a = a.max(g.lo);
            let b = b.min(end);
            Some(((a - g.lo) / g.step, (b - g.lo) / g.step))
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The lowest `limit` free slot indexes.
fn first_free_slots(pool: &SubnetPool, taken: &[IpNet], limit: u128) -> Vec<u128> {
    let Some(g) = geometry(pool) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cursor: u128 = 0;
    let push_gap = |from: u128, to_inclusive: u128, out: &mut Vec<u128>| {
        let mut s = from;
        while s <= to_inclusive && (out.len() as u128) < limit {
            out.push(s);
            if s == u128::MAX {
                break;
            }
            s += 1;
        }
    };
    for (a, b) in blocked_ranges(&g, taken) {
        if (out.len() as u128) >= limit {
            return out;
        }
        if a > cursor {
            push_gap(cursor, a - 1, &mut out);
        }
        match b.checked_add(1) {
            Some(next) => cursor = cursor.max(next),
            None => return out,
        }
    }
    if cursor <= g.last && (out.len() as u128) < limit {
        push_gap(cursor, g.last, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::IpAddr;

    fn pool(network: &str, len: u8, min: &str, max: &str) -> SubnetPool {
        SubnetPool {
            network: network.parse().unwrap(),
            subnet_len: len,
            subnet_min: min.parse().unwrap(),
            subnet_max: max.parse().unwrap(),
        }
    }

    fn v4_pool() -> SubnetPool {
        pool("10.244.0.0/16", 24, "10.244.1.0", "10.244.255.0")
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn first_choice_is_low_in_the_pool() {
        let got = choose_free(&v4_pool(), &[], 0).unwrap();
        assert_eq!(got, net("10.244.1.0/24"));
        let got = choose_free(&v4_pool(), &[], 99).unwrap();
        assert_eq!(got, net("10.244.100.0/24"));
    }

    #[test]
    fn finds_the_last_free_subnet() {
        let p = v4_pool();
        let taken: Vec<IpNet> = (1..=255u8)
            .filter(|i| *i != 77)
            .map(|i| net(&format!("10.244.{i}.0/24")))
            .collect();
        for r in [0, 1, 12345, u64::MAX] {
            assert_eq!(choose_free(&p, &taken, r), Some(net("10.244.77.0/24")));
        }
        let mut all = taken.clone();
        all.push(net("10.244.77.0/24"));
        assert_eq!(choose_free(&p, &all, 3), None);
    }

    #[test]
    fn partial_and_covering_prefixes_block_whole_slots() {
        let p = v4_pool();
        // a /26 inside slot 1 and a /20 covering slots 16..31
        let taken = [net("10.244.1.64/26"), net("10.244.16.0/20")];
        assert_eq!(choose_free(&p, &taken, 0), Some(net("10.244.2.0/24")));
        // slot 15 then jump to 32
        assert_eq!(choose_free(&p, &taken, 13), Some(net("10.244.15.0/24")));
        assert_eq!(choose_free(&p, &taken, 14), Some(net("10.244.32.0/24")));
    }

    #[test]
    fn covering_the_whole_network_leaves_nothing() {
        assert_eq!(choose_free(&v4_pool(), &[net("10.0.0.0/8")], 0), None);
        assert_eq!(choose_free(&v4_pool(), &[net("0.0.0.0/0")], 0), None);
    }

    #[test]
    fn huge_ipv6_pool_is_not_enumerated() {
        let p = pool("fd00::/32", 64, "fd00:0:0:1::", "fd00:0:ffff:ffff::");
        let taken: Vec<IpNet> = (1..5000u32)
            .map(|i| net(&format!("fd00:0:{:x}:{:x}::/64", i >> 16, i & 0xffff)))
            .collect();
        let got = choose_free(&p, &taken, 0).unwrap();
        assert_eq!(got, net("fd00:0:0:1388::/64"));
        // the very top of a /1-sized space
        let p = pool("8000::/1", 3, "a000::", "e000::");
        assert_eq!(
            choose_free(&p, &[net("a000::/3"), net("c000::/3")], 0),
            Some(net("e000::/3"))
        );
    }

    /// `network` in /`slen` subnets, all but the first and the last.
    fn pool_without_ends(network: IpNet, slen: u8) -> SubnetPool {
        let family = Family::of_net(network);
        let step = 1u128 << (family.bits() - slen);
        let (lo, hi) = prefix::bounds(network);
        SubnetPool {
            network,
            subnet_len: slen,
            subnet_min: prefix::u128_to_addr(family, lo + step),
            subnet_max: prefix::u128_to_addr(family, hi - (step - 1)),
        }
    }

    fn arb_pool() -> impl Strategy<Value = SubnetPool> {
        prop_oneof![
            (8u8..=28).prop_flat_map(|plen| {
                ((plen + 2)..=30).prop_map(move |slen| {
                    let network: IpNet = IpNet::new("10.0.0.0".parse().unwrap(), plen)
                        .unwrap()
                        .trunc();
                    pool_without_ends(network, slen)
                })
            }),
            (16u8..=100).prop_flat_map(|plen| {
                ((plen + 2)..=126).prop_map(move |slen| {
                    let network: IpNet =
                        IpNet::new("fd00::".parse().unwrap(), plen).unwrap().trunc();
                    pool_without_ends(network, slen)
                })
            }),
        ]
    }

    fn arb_taken(p: &SubnetPool) -> impl Strategy<Value = Vec<IpNet>> + use<> {
        let family = p.family();
        let (lo, hi) = prefix::bounds(p.network);
        let slen = p.subnet_len;
        let bits = family.bits();
        proptest::collection::vec((any::<u128>(), (slen.saturating_sub(3))..=bits), 0..60).prop_map(
            move |raw| {
                raw.into_iter()
                    .map(|(r, len)| {
                        let span = hi - lo;
                        let addr = lo + if span == u128::MAX { r } else { r % (span + 1) };
                        IpNet::new(prefix::u128_to_addr(family, addr), len)
                            .unwrap()
                            .trunc()
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #[test]
        fn finds_the_one_slot_left(slen in 18u8..=24, keep in any::<u64>(), random in any::<u64>()) {
            let p = pool("10.244.0.0/16", slen, "10.244.0.0", "10.244.0.0");
            let step = 1u128 << (32 - slen);
            let p = SubnetPool {
                subnet_min: prefix::u128_to_addr(Family::V4, prefix::addr_to_u128(p.subnet_min) + step),
                subnet_max: prefix::u128_to_addr(Family::V4, prefix::bounds(p.network).1 + 1 - step),
                ..p
            };
            let g = geometry(&p).unwrap();
            let keep = u128::from(keep) % (g.last + 1);
            let taken: Vec<IpNet> = (0..=g.last).filter(|s| *s != keep).map(|s| slot_net(&p, s).unwrap()).collect();
            prop_assert_eq!(choose_free(&p, &taken, random), slot_net(&p, keep));
        }

        #[test]
        fn choice_is_in_range_aligned_and_free(
            (p, taken) in arb_pool().prop_flat_map(|p| (Just(p), arb_taken(&p))),
            random in any::<u64>(),
        ) {
            if let Some(got) = choose_free(&p, &taken, random) {
                prop_assert!(p.holds_subnet(got), "{got} outside pool");
                prop_assert!(is_free(&p, &taken, got), "{got} overlaps {taken:?}");
                let lo: IpAddr = p.subnet_min;
                prop_assert!(prefix::addr_to_u128(got.addr()) >= prefix::addr_to_u128(lo));
            }
        }

        #[test]
        fn none_only_when_pool_is_full(
            (p, taken) in arb_pool().prop_flat_map(|p| (Just(p), arb_taken(&p))),
        ) {
            if choose_free(&p, &taken, 0).is_none() {
                // every slot must overlap something taken; check the ends
                // and a sample in between rather than enumerating.
                let g = geometry(&p).unwrap();
                for slot in [0, g.last / 2, g.last] {
                    let sn = slot_net(&p, slot).unwrap();
                    prop_assert!(taken.iter().any(|t| prefix::overlaps(*t, sn)), "{sn} was free");
                }
            }
        }
    }
}
