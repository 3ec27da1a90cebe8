//! The peer diff shared by both paths: actual peers and desired peers in,
//! the fewest operations out.
//!
//! Why the comparison normalises: the device reports what it stores, not
//! what it was told. Allowed IPs come back with host bits cleared and in its
//! own order; "no PSK" is an all-zero key to the kernel; "no keepalive" is 0.
//! Comparing raw values would update every peer on every pass and reset its
//! session each time.

use std::collections::{BTreeSet, HashMap, HashSet};

use ipnet::IpNet;
use weft_core::wg_key::WgKey;

use super::opening::FirstHandshake;
use super::roaming::EndpointRule;
use super::{PeerChanges, WgPeerSpec, WgPeerState};

/// What to change on one existing peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerUpdate<'a> {
    pub spec: &'a WgPeerSpec,
    pub endpoint: bool,
    /// Replace the peer's allowed IPs with the spec's.
    pub allowed_ips: bool,
    pub psk: bool,
    /// The keepalive to set, when it changes (`None` inside: disable it).
    /// Not always the spec's: a withheld one stays disabled.
    pub keepalive: Option<Option<u16>>,
}

/// A peer to add, and who starts its first session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewPeer<'a> {
    pub spec: &'a WgPeerSpec,
    /// With [`FirstHandshake::Theirs`] the peer is added without its
    /// keepalive (which would make the kernel initiate at once).
    pub first: FirstHandshake,
}

/// One change to a device's peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerOp<'a> {
    Remove(WgKey),
    Update(PeerUpdate<'a>),
    Add(NewPeer<'a>),
}

/// Who opens new pairs on a device: `Either` end (userspace), or by the
/// key rule of [`FirstHandshake::between`] (kernel).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Opening<'a> {
    Either,
    ByKey {
        own: WgKey,
        /// Peers still waiting for the other end: their keepalive stays
        /// unset.
        withheld: &'a HashSet<WgKey>,
    },
}

impl Opening<'_> {
    fn first(&self, peer: &WgKey) -> FirstHandshake {
        match self {
            Opening::Either => FirstHandshake::Either,
            Opening::ByKey { own, .. } => FirstHandshake::between(own, peer),
        }
    }

    fn withholds(&self, peer: &WgKey) -> bool {
        match self {
            Opening::Either => false,
            Opening::ByKey { withheld, .. } => withheld.contains(peer),
        }
    }
}

impl PeerOp<'_> {
    pub fn public_key(&self) -> WgKey {
        match self {
            PeerOp::Remove(k) => *k,
            PeerOp::Update(u) => u.spec.public_key,
            PeerOp::Add(new) => new.spec.public_key,
        }
    }
}

/// The allowed IPs as the device stores them.
pub(crate) fn networks(nets: &[IpNet]) -> BTreeSet<IpNet> {
    nets.iter().map(IpNet::trunc).collect()
}

/// `None` for "no PSK", whichever way it was said.
pub(crate) fn psk_of(psk: Option<WgKey>) -> Option<WgKey> {
    psk.filter(|k| k.0 != [0; 32])
}

/// `None` for "no keepalive", whichever way it was said.
pub(crate) fn keepalive_of(keepalive: Option<u16>) -> Option<u16> {
    keepalive.filter(|&k| k != 0)
}

/// The operations that turn `actual` into `desired`: updates and additions
/// in the order of `desired`, then removals. Removals go last because a
/// peer that takes over a removed one's networks (a node's new key after a
/// rotation) takes them at once when it is added: both the kernel and
/// gotatun move a network to the peer it is added to. Removing first would
/// leave the networks without a peer while the removal runs (the kernel
/// waits for an RCU grace period there), and packets to them would be
/// dropped. Refuses a desired set that repeats a public
/// key or gives a network to two peers: the device keeps each network on
/// one peer only, so such a set would never converge. `opening` says who
/// starts new pairs' sessions, and whose keepalive is still withheld;
/// `endpoints` whether an endpoint that differs from the lease is a roam to
/// respect or a stale one to repair (`wireguard/roaming.rs`).
pub(crate) fn diff<'a>(
    actual: &[WgPeerState],
    desired: &'a [WgPeerSpec],
    opening: Opening<'_>,
    endpoints: EndpointRule<'_>,
) -> Result<Vec<PeerOp<'a>>, String> {
    let mut owner: HashMap<IpNet, WgKey> = HashMap::new();
    let mut wanted: HashMap<WgKey, &WgPeerSpec> = HashMap::with_capacity(desired.len());
    for spec in desired {
        if wanted.insert(spec.public_key, spec).is_some() {
            return Err(format!("peer {} is listed twice", spec.public_key));
        }
        for net in networks(&spec.allowed_ips) {
            if let Some(other) = owner.insert(net, spec.public_key) {
                return Err(format!(
                    "{net} is an allowed IP of both peer {other} and peer {}",
                    spec.public_key
                ));
            }
        }
    }
    let present: HashMap<WgKey, &WgPeerState> = actual.iter().map(|p| (p.public_key, p)).collect();

    let mut removals: Vec<WgKey> = actual
        .iter()
        .map(|p| p.public_key)
        .filter(|k| !wanted.contains_key(k))
        .collect();
    removals.sort();
    let mut ops: Vec<PeerOp<'a>> = Vec::new();

    for spec in desired {
        let Some(have) = present.get(&spec.public_key) else {
            ops.push(PeerOp::Add(NewPeer {
                spec,
                first: opening.first(&spec.public_key),
            }));
            continue;
        };
        let want_keepalive = if opening.withholds(&spec.public_key) {
            None
        } else {
            keepalive_of(spec.keepalive)
        };
        let update = PeerUpdate {
            spec,
            endpoint: endpoints.must_set(have, spec),
            allowed_ips: networks(&have.allowed_ips) != networks(&spec.allowed_ips),
            psk: psk_of(have.psk) != psk_of(spec.psk),
            keepalive: (keepalive_of(have.keepalive) != want_keepalive).then_some(want_keepalive),
        };
        if update.endpoint || update.allowed_ips || update.psk || update.keepalive.is_some() {
            ops.push(PeerOp::Update(update));
        }
    }
    ops.extend(removals.into_iter().map(PeerOp::Remove));
    Ok(ops)
}

/// Counts by kind, for [`PeerChanges`].
pub(crate) fn changes(ops: &[PeerOp<'_>]) -> PeerChanges {
    let mut c = PeerChanges::default();
    for op in ops {
        match op {
            PeerOp::Remove(_) => c.removed += 1,
            PeerOp::Update(_) => c.updated += 1,
            PeerOp::Add(_) => c.added += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::super::roaming::LeaseEndpoints;
    use super::*;

    /// The diff of a device whose peers have no session: every endpoint
    /// that differs from the lease is repaired.
    fn diff_lease<'a>(
        actual: &[WgPeerState],
        desired: &'a [WgPeerSpec],
    ) -> Result<Vec<PeerOp<'a>>, String> {
        let memory = LeaseEndpoints::default();
        diff(
            actual,
            desired,
            Opening::Either,
            memory.rule(std::time::SystemTime::now()),
        )
    }

    fn net(s: &str) -> IpNet {
        s.parse()
            .unwrap_or_else(|_| unreachable!("bad test net {s}"))
    }

    fn spec(n: u8, nets: &[&str]) -> WgPeerSpec {
        WgPeerSpec {
            public_key: WgKey([n; 32]),
            endpoint: format!("192.0.2.{n}:51820")
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            allowed_ips: nets.iter().map(|s| net(s)).collect(),
            psk: None,
            keepalive: None,
        }
    }

    /// The state a device reports after being given `s`, the way the kernel
    /// says it: networks reordered, zero PSK, zero keepalive.
    fn state(s: &WgPeerSpec) -> WgPeerState {
        let mut allowed: Vec<IpNet> = s.allowed_ips.iter().map(IpNet::trunc).collect();
        allowed.reverse();
        WgPeerState {
            public_key: s.public_key,
            endpoint: Some(s.endpoint),
            allowed_ips: allowed,
            psk: Some(s.psk.unwrap_or(WgKey([0; 32]))),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            keepalive: Some(s.keepalive.unwrap_or(0)),
        }
    }

    #[test]
    fn applied_state_needs_no_change() {
        let desired = vec![spec(1, &["10.244.1.7/24", "fd00:1::/64"]), spec(2, &[])];
        let actual: Vec<_> = desired.iter().map(state).collect();
        assert_eq!(diff_lease(&actual, &desired), Ok(vec![]));
    }

    #[test]
    fn adds_updates_and_removes_only_what_differs() {
        let desired = vec![spec(1, &["10.244.1.0/24"]), spec(3, &["10.244.3.0/24"])];
        let mut moved = desired[0].clone();
        moved.endpoint = "192.0.2.99:51820"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let actual = vec![state(&moved), state(&spec(2, &["10.244.2.0/24"]))];
        let ops = diff_lease(&actual, &desired).unwrap_or_default();
        assert_eq!(
            ops,
            vec![
                PeerOp::Update(PeerUpdate {
                    spec: &desired[0],
                    endpoint: true,
                    allowed_ips: false,
                    psk: false,
                    keepalive: None,
                }),
                PeerOp::Add(NewPeer {
                    spec: &desired[1],
                    first: FirstHandshake::Either,
                }),
                PeerOp::Remove(WgKey([2; 32])),
            ]
        );
        let c = changes(&ops);
        assert_eq!((c.added, c.updated, c.removed), (1, 1, 1));
    }

    /// A node's new key (a rotation) takes its old key's network: the new
    /// peer is added, with the network, before the old one goes, so the
    /// network always has a peer.
    #[test]
    fn a_new_key_is_added_before_the_old_one_is_removed() {
        let desired = vec![spec(7, &["10.244.1.0/24"])];
        let actual = vec![state(&spec(1, &["10.244.1.0/24"]))];
        let ops = diff_lease(&actual, &desired).unwrap_or_default();
        assert!(
            matches!(&ops[..], [PeerOp::Add(a), PeerOp::Remove(old)] if a.spec.public_key == WgKey([7; 32]) && *old == WgKey([1; 32])),
            "{ops:?}"
        );
    }

    #[test]
    fn psk_and_keepalive_changes_are_seen() {
        let mut want = spec(1, &["10.244.1.0/24"]);
        let actual = vec![state(&want)];
        want.psk = Some(WgKey([9; 32]));
        want.keepalive = Some(25);
        let ops = diff_lease(&actual, std::slice::from_ref(&want)).unwrap_or_default();
        assert!(
            matches!(&ops[..], [PeerOp::Update(u)] if u.psk && u.keepalive == Some(Some(25)) && !u.endpoint && !u.allowed_ips)
        );
    }

    #[test]
    fn contradictory_sets_are_refused() {
        let twice = vec![spec(1, &[]), spec(1, &[])];
        assert!(diff_lease(&[], &twice).is_err_and(|e| e.contains("listed twice")));
        let shared = vec![spec(1, &["10.244.1.0/24"]), spec(2, &["10.244.1.9/24"])];
        assert!(diff_lease(&[], &shared).is_err_and(|e| e.contains("10.244.1.0/24")));
    }
}
