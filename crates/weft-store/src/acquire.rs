//! Taking a lease over the key-value seam.
//!
//! The order follows flannel: our own lease (matched by public IP, which
//! also covers reservations) if it still fits the config, else the subnets of
//! the previous subnet.env if free, else a free subnet. Unlike flannel, a
//! lost creation race means listing again and choosing again, never exiting.

use std::time::Duration;

use ipnet::IpNet;
use tracing::{info, warn};
use weft_core::alloc;
use weft_core::etcd_key;
use weft_core::lease::{Lease, LeaseAttrs, LeaseSubnets};
use weft_core::netconf::NetConfig;
use weft_core::prefix::{self, Family};

use crate::kv::{Kv, KvEntry, Listing, Ttl};
use crate::{AcquireRequest, StoreError, random};

/// How many lost races are tolerated before giving up. Each round lets at
/// least one contender win, so this bounds a stampede of this many nodes.
const MAX_ATTEMPTS: u32 = 500;

/// A parsed entry of the subnet directory.
struct Existing<'a> {
    entry: &'a KvEntry,
    subnets: LeaseSubnets,
    attrs: Option<LeaseAttrs>,
}

/// True when `subnets` is exactly what this config would hand out: one
/// subnet of each enabled family, each inside its pool, none of a disabled
/// family.
pub(crate) fn compatible(cfg: &NetConfig, subnets: &LeaseSubnets) -> bool {
    Family::ALL
        .iter()
        .all(|f| match (cfg.pool(*f), subnets.get(*f)) {
            (Some(pool), Some(sn)) => pool.holds_subnet(sn),
            (None, None) => true,
            _ => false,
        })
}

/// flannel's notion of "our lease": the same public IP (IPv4, or IPv6 on an
/// IPv6-only node).
pub(crate) fn same_node(ours: &LeaseAttrs, theirs: &LeaseAttrs) -> bool {
    match (ours.public_ip, theirs.public_ip) {
        (Some(a), Some(b)) => a == b,
        (None, None) => ours.public_ipv6.is_some() && ours.public_ipv6 == theirs.public_ipv6,
        _ => false,
    }
}

/// Runs the acquisition protocol until it wins a lease or hits an error
/// that retrying cannot fix. The first attempt chooses from `listed` when
/// given (a listing a moment old: see `warm.rs`); the lease comes back with
/// the listing it was chosen from, which the lease write came after.
pub(crate) async fn acquire<K: Kv>(
    kv: &K,
    prefix: &str,
    ttl: Duration,
    cfg: &NetConfig,
    req: &AcquireRequest,
    mut listed: Option<Listing>,
) -> Result<(Lease, Listing), StoreError> {
    let dir = etcd_key::subnets_dir(prefix);
    let value = req.attrs.to_json().into_bytes();
    for attempt in 1..=MAX_ATTEMPTS {
        let listing = match listed.take() {
            Some(listing) => listing,
            None => kv
                .list(&dir)
                .await
                .map_err(|e| StoreError::from_kv(kv.name(), e))?,
        };
        let won = attempt_once(kv, prefix, ttl, cfg, req, &value, &listing).await?;
        match won {
            Some(lease) => return Ok((lease, listing)),
            None => backoff_after_race(attempt).await,
        }
    }
    Err(StoreError::TooManyRaces {
        attempts: MAX_ATTEMPTS,
    })
}

/// One round of the protocol over `listing`: the lease won, or `None`
/// when another writer got there first (list again and choose again).
async fn attempt_once<K: Kv>(
    kv: &K,
    prefix: &str,
    ttl: Duration,
    cfg: &NetConfig,
    req: &AcquireRequest,
    value: &[u8],
    listing: &Listing,
) -> Result<Option<Lease>, StoreError> {
    let dir = etcd_key::subnets_dir(prefix);
    let dir = dir.as_str();
    let existing: Vec<Existing<'_>> = listing
        .entries
        .iter()
        .filter_map(|entry| {
            let name = entry.key.strip_prefix(dir)?;
            let subnets = etcd_key::parse_subnet_key(name).ok()?;
            let attrs = LeaseAttrs::from_json(&entry.value).ok();
            Some(Existing {
                entry,
                subnets,
                attrs,
            })
        })
        .collect();

    // 1. Our own lease, recognised by public IP.
    let mut raced = false;
    let mut deleted: Vec<&str> = Vec::new();
    for own in existing
        .iter()
        .filter(|e| e.attrs.as_ref().is_some_and(|a| same_node(&req.attrs, a)))
    {
        let reservation = !own.entry.expires;
        if !compatible(cfg, &own.subnets) {
            if reservation {
                warn!(key = %own.entry.key, "reservation for this node does not fit the network config; ignoring it");
                continue;
            }
            info!(key = %own.entry.key, "our previous lease does not fit the network config any more; deleting it");
            match kv.delete(&own.entry.key, own.entry.mod_rev).await {
                Ok(_) => deleted.push(&own.entry.key),
                Err(e) => return Err(StoreError::from_kv(kv.name(), e)),
            }
            continue;
        }
        let lease_ttl = if reservation {
            Ttl::Forever
        } else {
            Ttl::For(ttl)
        };
        match kv
            .replace(&own.entry.key, own.entry.mod_rev, value, lease_ttl)
            .await
        {
            Ok(true) => {
                info!(subnets = %own.subnets, reservation, "reusing our lease");
                return Ok(Some(lease(own.subnets, req.attrs.clone(), lease_ttl)));
            }
            Ok(false) => raced = true,
            Err(e) => return Err(StoreError::from_kv(kv.name(), e)),
        }
    }
    if raced {
        return Ok(None);
    }

    let taken: Vec<IpNet> = existing
        .iter()
        .filter(|e| !deleted.contains(&e.entry.key.as_str()))
        .flat_map(|e| e.subnets.iter())
        .collect();

    // 2. The subnets of the previous subnet.env, if still free.
    let previous_free = !req.previous.is_empty()
        && compatible(cfg, &req.previous)
        && req
            .previous
            .iter()
            .all(|sn| !taken.iter().any(|t| prefix::overlaps(*t, sn)));
    let candidate = if previous_free {
        req.previous
    } else {
        choose(cfg, &taken)?
    };

    let key = etcd_key::lease_key(prefix, &candidate);
    match kv
        .create_if_unchanged(dir, listing.revision, &key, value, Ttl::For(ttl))
        .await
    {
        Ok(true) => {
            info!(subnets = %candidate, "acquired a new lease");
            Ok(Some(lease(candidate, req.attrs.clone(), Ttl::For(ttl))))
        }
        Ok(false) => Ok(None),
        Err(e) => Err(StoreError::from_kv(kv.name(), e)),
    }
}

fn choose(cfg: &NetConfig, taken: &[IpNet]) -> Result<LeaseSubnets, StoreError> {
    let mut out = LeaseSubnets::default();
    for pool in cfg.pools() {
        let Some(sn) = alloc::choose_free(pool, taken, random::u64()) else {
            let capacity = capacity(pool);
            return Err(StoreError::PoolExhausted {
                family: pool.family(),
                network: pool.network,
                subnet_len: pool.subnet_len,
                min: pool.subnet_min,
                max: pool.subnet_max,
                capacity,
            });
        };
        match sn {
            IpNet::V4(n) => out.v4 = Some(n),
            IpNet::V6(n) => out.v6 = Some(n),
        }
    }
    Ok(out)
}

fn capacity(pool: &weft_core::netconf::SubnetPool) -> String {
    let lo = prefix::addr_to_u128(pool.subnet_min);
    let hi = prefix::addr_to_u128(pool.subnet_max);
    match prefix::block_size(pool.family(), pool.subnet_len) {
        Some(step) if hi >= lo => ((hi - lo) / step + 1).to_string(),
        _ => "0".to_owned(),
    }
}

fn lease(subnets: LeaseSubnets, attrs: LeaseAttrs, ttl: Ttl) -> Lease {
    Lease {
        subnets,
        attrs,
        expiration: match ttl {
            Ttl::For(d) => Some(std::time::SystemTime::now() + d),
            Ttl::Forever => None,
        },
    }
}

/// A short random pause so that nodes that collided do not collide again in
/// lockstep.
async fn backoff_after_race(attempt: u32) {
    let cap_ms = 2u64.saturating_pow(attempt.min(6)).min(50);
    tokio::time::sleep(Duration::from_millis(random::u64() % (cap_ms + 1))).await;
}
