//! Which endpoint a peer gets: the lease's address, or where WireGuard
//! found it.
//!
//! WireGuard moves a peer's endpoint to the address its last authenticated
//! packet came from ("roaming"). Across NAT that address can differ from the
//! one the peer's lease advertises: a port rewritten by the NAT, a mapping
//! that moved. Setting the lease's address back on every pass would fight
//! the protocol and, where only the roamed address answers, cut the pair.
//!
//! The rule:
//! - a new peer starts at its lease's address;
//! - when the lease's address changes (the peer renumbered), the device is
//!   told the new one at once;
//! - otherwise a device endpoint that differs from the lease is left alone
//!   while the pair has a live session (a handshake within
//!   [`LIVE_SESSION`]): it is where the peer really is;
//! - a differing endpoint with no live session is stale, and goes back to the
//!   lease's address.
//!
//! "The lease's address changed" needs memory of what the lease said at the
//! last pass. An agent that restarts has none, so its first pass judges by
//! the session alone: a roamed pair keeps its endpoint across the restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use weft_core::wg_key::WgKey;

use super::{WgPeerSpec, WgPeerState};

/// How long after its last handshake a session still carries traffic:
/// WireGuard's Reject-After-Time. A pair that exchanges packets re-keys
/// well within it; one idle longer has no session to protect.
pub const LIVE_SESSION: Duration = Duration::from_secs(180);

/// The lease endpoints of the last pass, per peer.
#[derive(Debug, Default)]
pub(crate) struct LeaseEndpoints {
    last: HashMap<WgKey, SocketAddr>,
}

/// What the endpoint rule decides from: the memory and the clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndpointRule<'a> {
    pub last: &'a LeaseEndpoints,
    pub now: SystemTime,
}

impl EndpointRule<'_> {
    /// Whether the device's endpoint for this peer must be set to the
    /// lease's.
    pub fn must_set(&self, have: &WgPeerState, spec: &WgPeerSpec) -> bool {
        let Some(current) = have.endpoint else {
            return true;
        };
        if current == spec.endpoint {
            return false;
        }
        if self
            .last
            .last
            .get(&spec.public_key)
            .is_some_and(|before| *before != spec.endpoint)
        {
            return true;
        }
        !self.live(have)
    }

    fn live(&self, have: &WgPeerState) -> bool {
        session_is_live(have.last_handshake, self.now)
    }
}

/// Whether a pair whose last handshake was at `last_handshake` still has a
/// session carrying traffic at `now`: what makes an endpoint that differs
/// from the lease a roam rather than drift (for `weft status` too). A
/// handshake the clock places in the future counts as live: wall clocks
/// step.
pub fn session_is_live(last_handshake: Option<SystemTime>, now: SystemTime) -> bool {
    last_handshake.is_some_and(|at| {
        now.duration_since(at)
            .map_or(true, |age| age < LIVE_SESSION)
    })
}

impl LeaseEndpoints {
    /// Remembers the lease endpoints a pass applied, forgetting peers that
    /// are gone.
    pub fn remember(&mut self, desired: &[WgPeerSpec]) {
        self.last = desired
            .iter()
            .map(|spec| (spec.public_key, spec.endpoint))
            .collect();
    }

    /// How many of `peers` have a live session at another endpoint than
    /// their lease gave at the last pass (roamed: behind a NAT that
    /// rewrites ports, or a stale advertised address).
    pub fn reached_elsewhere(&self, peers: &[WgPeerState], now: SystemTime) -> usize {
        peers
            .iter()
            .filter(|p| {
                let leased = self.last.get(&p.public_key);
                leased.is_some_and(|l| p.endpoint.is_some_and(|e| e != *l))
                    && session_is_live(p.last_handshake, now)
            })
            .count()
    }

    /// The rule as of `now`.
    pub fn rule(&self, now: SystemTime) -> EndpointRule<'_> {
        EndpointRule { last: self, now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| unreachable!("bad test address {s}"))
    }

    fn spec(endpoint: &str) -> WgPeerSpec {
        WgPeerSpec {
            public_key: WgKey([7; 32]),
            endpoint: addr(endpoint),
            allowed_ips: Vec::new(),
            psk: None,
            keepalive: None,
        }
    }

    fn state(endpoint: Option<&str>, handshake_age: Option<u64>, now: SystemTime) -> WgPeerState {
        WgPeerState {
            public_key: WgKey([7; 32]),
            endpoint: endpoint.map(addr),
            allowed_ips: Vec::new(),
            psk: None,
            last_handshake: handshake_age.map(|s| now - Duration::from_secs(s)),
            rx_bytes: 0,
            tx_bytes: 0,
            keepalive: None,
        }
    }

    const LEASE: &str = "203.0.113.2:51820";
    const ROAMED: &str = "203.0.113.2:40123";

    /// Whether an agent remembering no lease endpoint (one just restarted)
    /// sets the lease's endpoint over `have`.
    fn sets_lease_fresh(have: &WgPeerState, now: SystemTime) -> bool {
        LeaseEndpoints::default()
            .rule(now)
            .must_set(have, &spec(LEASE))
    }

    #[test]
    fn a_roamed_endpoint_with_a_live_session_is_left_alone() {
        let now = SystemTime::now();
        let mut memory = LeaseEndpoints::default();
        memory.remember(&[spec(LEASE)]);
        let have = state(Some(ROAMED), Some(10), now);
        assert!(!memory.rule(now).must_set(&have, &spec(LEASE)));
        // Nothing remembered (an agent that just restarted): the same.
        assert!(!sets_lease_fresh(&have, now));
    }

    #[test]
    fn a_stale_or_missing_endpoint_goes_back_to_the_lease() {
        let now = SystemTime::now();
        let rule_memory = LeaseEndpoints::default();
        let rule = rule_memory.rule(now);
        assert!(rule.must_set(&state(Some(ROAMED), Some(181), now), &spec(LEASE)));
        assert!(rule.must_set(&state(Some(ROAMED), None, now), &spec(LEASE)));
        assert!(rule.must_set(&state(None, Some(1), now), &spec(LEASE)));
        assert!(!rule.must_set(&state(Some(LEASE), None, now), &spec(LEASE)));
    }

    #[test]
    fn a_lease_that_moves_is_followed_even_with_a_live_session() {
        let now = SystemTime::now();
        let mut memory = LeaseEndpoints::default();
        memory.remember(&[spec(LEASE)]);
        let moved = spec("198.51.100.9:51820");
        let have = state(Some(ROAMED), Some(5), now);
        assert!(memory.rule(now).must_set(&have, &moved));
        memory.remember(std::slice::from_ref(&moved));
        // Once told, a roam away from the new address is respected again.
        assert!(!memory.rule(now).must_set(&have, &moved));
    }

    #[test]
    fn a_handshake_in_the_future_counts_as_live() {
        // Wall clocks step; a session the clock places ahead is not stale.
        let now = SystemTime::now();
        let mut have = state(Some(ROAMED), None, now);
        have.last_handshake = Some(now + Duration::from_secs(30));
        assert!(!sets_lease_fresh(&have, now));
    }

    #[test]
    fn only_live_peers_off_their_lease_count_as_reached_elsewhere() {
        let now = SystemTime::now();
        let mut memory = LeaseEndpoints::default();
        memory.remember(&[spec(LEASE)]);
        assert_eq!(
            memory.reached_elsewhere(&[state(Some(ROAMED), Some(5), now)], now),
            1
        );
        assert_eq!(
            memory.reached_elsewhere(&[state(Some(ROAMED), Some(200), now)], now),
            0
        );
        assert_eq!(
            memory.reached_elsewhere(&[state(Some(LEASE), Some(5), now)], now),
            0
        );
        assert_eq!(
            LeaseEndpoints::default().reached_elsewhere(&[state(Some(ROAMED), Some(5), now)], now),
            0
        );
    }
}
