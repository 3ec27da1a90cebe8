//! A peer node's flannel annotations and podCIDRs, the Kubernetes store's
//! hostile input. The store's node→lease function (`node::peer_lease` in
//! `weft-store/src/kube/node.rs`) is private to the crate, so this target
//! rebuilds a lease from the annotations with the same public weft-core
//! pieces in the same order (podCIDR parsing by `prefix::parse_cidr` and
//! masking, the 4 KiB limit, address parsing, `RawJson::parse` of the
//! backend data) and then screens it as the store does. It covers the decoders and the screening on
//! annotation-shaped input, not node.rs's own lines.
//!
//! Input, text: a first line `v4`, `dual` or `wg` (the cluster), then
//! `name=value` lines: `podCIDRs` (comma-separated), `public-ip`,
//! `public-ipv6`, `backend-type`, `backend-data`, `backend-v6-data`.
#![no_main]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use weft_core::lease::{
    Lease, LeaseAttrs, LeaseDecodeError, LeaseSubnets, MAX_LEASE_VALUE_BYTES, RawJson,
};
use weft_core::peer::{self, PeerRejection};
use weft_core::prefix;

fn bad(detail: String) -> PeerRejection {
    PeerRejection::BadValue(LeaseDecodeError::Json(detail))
}

fn lease(a: &BTreeMap<&str, &str>, v4: bool, v6: bool) -> Result<Lease, PeerRejection> {
    let read = |k: &str| -> Result<Option<&str>, PeerRejection> {
        match a.get(k) {
            Some(v) if v.len() > MAX_LEASE_VALUE_BYTES => {
                Err(PeerRejection::BadValue(LeaseDecodeError::TooLarge(v.len())))
            }
            v => Ok(v.copied()),
        }
    };
    let list: Vec<&str> = a
        .get("podCIDRs")
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    if list.is_empty() {
        return Err(PeerRejection::NoSubnet);
    }
    if list.len() > 2 {
        return Err(bad("more than two podCIDRs".into()));
    }
    let mut subnets = LeaseSubnets::default();
    for text in list {
        let net = prefix::parse_cidr(text).map_err(|_| bad(format!("{text:?}")))?;
        let dup = match net.trunc() {
            IpNet::V4(n) => subnets.v4.replace(n).is_some(),
            IpNet::V6(n) => subnets.v6.replace(n).is_some(),
        };
        if dup {
            return Err(bad("two podCIDRs of one family".into()));
        }
    }
    let ip4 = if v4 {
        read("public-ip")?
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<Ipv4Addr>().map_err(|_| bad(v.into())))
            .transpose()?
            .filter(|ip| !ip.is_unspecified())
    } else {
        None
    };
    let ip6 = if v6 {
        read("public-ipv6")?
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<Ipv6Addr>().map_err(|_| bad(v.into())))
            .transpose()?
    } else {
        None
    };
    let raw = |k: &str, on: bool| -> Result<Option<RawJson>, PeerRejection> {
        if !on {
            return Ok(None);
        }
        read(k)?
            .map(|v| RawJson::parse(v).map_err(|e| bad(e.to_string())))
            .transpose()
    };
    Ok(Lease {
        subnets: LeaseSubnets {
            v4: subnets.v4.filter(|_| v4),
            v6: subnets.v6.filter(|_| v6),
        },
        attrs: LeaseAttrs {
            public_ip: ip4,
            public_ipv6: ip6,
            backend_type: read("backend-type")?.unwrap_or_default().to_owned(),
            backend_data: raw("backend-data", v4)?,
            backend_v6_data: raw("backend-v6-data", v6)?,
        },
        expiration: None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let cluster = lines.next().unwrap_or_default().trim();
    let index = match cluster {
        "dual" => 1,
        "wg" => 2,
        _ => 0,
    };
    let annotations: BTreeMap<&str, &str> = lines.filter_map(|l| l.split_once('=')).collect();
    let setting = &weft_fuzz::settings()[index];
    let (v4, v6) = (setting.cfg.ipv4.is_some(), setting.cfg.ipv6.is_some());
    let screened = peer::screen(
        &setting.cfg,
        &setting.own,
        [
            (setting.good.0.clone(), Ok(setting.good.1.clone())),
            ("fuzzed".to_owned(), lease(&annotations, v4, v6)),
        ],
    );
    weft_fuzz::check(setting, &screened);
});
