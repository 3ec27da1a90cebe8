//! Who sends a new pair's first handshake on the kernel path, and how the
//! other end waits for it.
//!
//! Why this exists: the kernel's Noise state holds one handshake per peer.
//! When both ends of a new pair send an initiation at the same moment (pods
//! on both nodes start talking together; `weft lab check` probes both
//! directions at once) each end consumes the other's initiation, which
//! discards its own. Both responses are then refused ("Invalid handshake
//! response" in the kernel's debug log) and the pair retries after
//! REKEY_TIMEOUT (5 s). The retries carry at most 333 ms of jitter, so where
//! the one-way delay is long (a loaded or emulated host) they cross again:
//! in a Debian-kernel VM, 3 labs in 4 lost a pair for 10 s or more.
//! WireGuard avoids this race for rekeys by letting only a session's
//! initiator rekey; weft does the same for the first session:
//!
//! - of two weft nodes, the one whose public key sorts lower starts the
//!   session as soon as it has the peer and its device is up
//!   ([`FirstHandshake::Ours`]);
//! - the other end ([`FirstHandshake::Theirs`]) sends nothing of its own
//!   accord: a configured persistent keepalive (which makes the kernel
//!   initiate at once) is withheld until a session exists, or until
//!   [`AWAIT_GRACE`] has passed without one. Then it starts the session
//!   itself: the other end may be a flannel node, which never does, or may
//!   hold a session with a device of ours that no longer exists (deleted
//!   and recreated), which it will not replace of its own accord for two
//!   minutes.
//!
//! The kernel starts a handshake when a peer's persistent keepalive goes
//! from 0 to non-zero on a running device (it sends a keepalive, which
//! needs a session). That transition, set back at once where no keepalive
//! is configured, is how a session is started from outside
//! ([`Prime`]).
//!
//! gotatun (the userspace path) keeps its own initiation when it consumes a
//! peer's, so crossed initiations complete there: it keeps
//! [`FirstHandshake::Either`] and nothing here applies to it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use weft_core::wg_key::WgKey;

use super::WgPeerState;
use super::diff::PeerOp;

/// How long the waiting end gives the starting end before starting the
/// session itself: one REKEY_TIMEOUT, the kernel's own retry interval.
pub(crate) const AWAIT_GRACE: Duration = Duration::from_secs(5);

/// The keepalive interval set for an instant to start a session on a peer
/// that has none configured (any non-zero value would do).
pub(crate) const PRIME_KEEPALIVE: u16 = 25;

/// Who sends a new peer's first handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstHandshake {
    /// Either end, when it has traffic (the userspace path).
    Either,
    /// This end, as soon as the peer is added and the device is up.
    Ours,
    /// The other end; this one waits (see the module documentation).
    Theirs,
}

impl FirstHandshake {
    /// The rule both ends apply alike: the lower public key starts.
    pub(crate) fn between(own: &WgKey, peer: &WgKey) -> FirstHandshake {
        if own < peer {
            FirstHandshake::Ours
        } else {
            FirstHandshake::Theirs
        }
    }
}

/// A session to start on one peer: its keepalive goes 0 → non-zero (which
/// starts the handshake) → `keepalive`, its configured value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prime {
    pub key: WgKey,
    /// The keepalive the peer keeps afterwards; `None` for none.
    pub keepalive: Option<u16>,
}

impl Prime {
    /// The keepalive values to set, in order.
    pub(crate) fn steps(&self) -> Vec<u16> {
        match self.keepalive {
            Some(k) => vec![0, k],
            None => vec![0, PRIME_KEEPALIVE, 0],
        }
    }
}

/// One kernel device's peers whose first session is still to come.
#[derive(Debug, Default)]
pub(crate) struct Openings {
    /// Ours to start, once the pass that added them has the device up.
    start: HashSet<WgKey>,
    /// Theirs to start: when we stop waiting, and the keepalive withheld
    /// until then.
    waiting: HashMap<WgKey, (Instant, Option<u16>)>,
}

impl Openings {
    /// The peers whose configured keepalive the diff must not set yet.
    pub(crate) fn withheld(&self) -> HashSet<WgKey> {
        self.waiting.keys().copied().collect()
    }

    /// Notes what `ops` added and forgets what they removed.
    pub(crate) fn record(&mut self, ops: &[PeerOp<'_>], now: Instant) {
        for op in ops {
            match op {
                PeerOp::Add(new) => match new.first {
                    FirstHandshake::Either => {}
                    FirstHandshake::Ours => {
                        self.start.insert(new.spec.public_key);
                    }
                    FirstHandshake::Theirs => {
                        let keepalive = super::diff::keepalive_of(new.spec.keepalive);
                        self.waiting
                            .insert(new.spec.public_key, (now + AWAIT_GRACE, keepalive));
                    }
                },
                PeerOp::Remove(key) => {
                    self.start.remove(key);
                    self.waiting.remove(key);
                }
                PeerOp::Update(_) => {}
            }
        }
    }

    /// True when nothing is pending (the common case: no work, no read).
    pub(crate) fn is_empty(&self) -> bool {
        self.start.is_empty() && self.waiting.is_empty()
    }

    /// What to send now, given the device's peers as just read: every
    /// peer of ours without a session; every waiting peer whose session
    /// came (its keepalive can now be set) or whose wait is over. What is
    /// returned is no longer pending.
    pub(crate) fn due(&mut self, actual: &[WgPeerState], now: Instant) -> Vec<Prime> {
        let by_key: HashMap<WgKey, &WgPeerState> =
            actual.iter().map(|p| (p.public_key, p)).collect();
        let mut due = Vec::new();
        for key in std::mem::take(&mut self.start) {
            if let Some(peer) = by_key.get(&key)
                && peer.last_handshake.is_none()
            {
                due.push(Prime {
                    key,
                    keepalive: super::diff::keepalive_of(peer.keepalive),
                });
            }
        }
        self.waiting.retain(|key, (deadline, keepalive)| {
            let Some(peer) = by_key.get(key) else {
                return false;
            };
            let session = peer.last_handshake.is_some();
            if session && keepalive.is_none() {
                return false;
            }
            if session || now >= *deadline {
                due.push(Prime {
                    key: *key,
                    keepalive: *keepalive,
                });
                return false;
            }
            true
        });
        due.sort_by_key(|p| p.key);
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::super::WgPeerSpec;
    use super::super::diff::NewPeer;
    use super::*;

    fn spec(n: u8, keepalive: Option<u16>) -> WgPeerSpec {
        WgPeerSpec {
            public_key: WgKey([n; 32]),
            endpoint: std::net::SocketAddr::from(([192, 0, 2, n], 51820)),
            allowed_ips: vec![],
            psk: None,
            keepalive,
        }
    }

    /// What `due` answers when peer `n` alone is to be primed.
    fn primed(n: u8, keepalive: Option<u16>) -> Vec<Prime> {
        vec![Prime {
            key: WgKey([n; 32]),
            keepalive,
        }]
    }

    fn state(n: u8, keepalive: Option<u16>, session: bool) -> WgPeerState {
        WgPeerState {
            public_key: WgKey([n; 32]),
            endpoint: None,
            allowed_ips: vec![],
            psk: None,
            last_handshake: session.then(SystemTime::now),
            rx_bytes: 0,
            tx_bytes: 0,
            keepalive,
        }
    }

    #[test]
    fn both_ends_agree_on_who_starts() {
        let (a, b) = (WgKey([1; 32]), WgKey([2; 32]));
        assert_eq!(FirstHandshake::between(&a, &b), FirstHandshake::Ours);
        assert_eq!(FirstHandshake::between(&b, &a), FirstHandshake::Theirs);
    }

    #[test]
    fn a_prime_ends_on_the_configured_keepalive() {
        let none = Prime {
            key: WgKey([1; 32]),
            keepalive: None,
        };
        assert_eq!(none.steps(), vec![0, PRIME_KEEPALIVE, 0]);
        let some = Prime {
            key: WgKey([1; 32]),
            keepalive: Some(7),
        };
        assert_eq!(some.steps(), vec![0, 7]);
    }

    #[test]
    fn ours_are_started_once_and_only_without_a_session() {
        let (s1, s2) = (spec(1, None), spec(2, Some(25)));
        let ops = vec![
            PeerOp::Add(NewPeer {
                spec: &s1,
                first: FirstHandshake::Ours,
            }),
            PeerOp::Add(NewPeer {
                spec: &s2,
                first: FirstHandshake::Ours,
            }),
        ];
        let mut o = Openings::default();
        let now = Instant::now();
        o.record(&ops, now);
        assert!(o.withheld().is_empty());
        let due = o.due(&[state(1, None, false), state(2, Some(25), true)], now);
        assert_eq!(due, primed(1, None));
        assert!(o.is_empty());
        assert!(o.due(&[state(1, None, false)], now).is_empty());
    }

    #[test]
    fn theirs_wait_then_start_or_get_their_keepalive() {
        let (s3, s4, s5) = (spec(3, None), spec(4, Some(25)), spec(5, None));
        let ops: Vec<PeerOp<'_>> = [&s3, &s4, &s5]
            .into_iter()
            .map(|spec| {
                PeerOp::Add(NewPeer {
                    spec,
                    first: FirstHandshake::Theirs,
                })
            })
            .collect();
        let mut o = Openings::default();
        let t0 = Instant::now();
        o.record(&ops, t0);
        assert_eq!(o.withheld().len(), 3);
        // Within the grace: a session without keepalive is simply done,
        // a session with one gets it, the third still waits.
        let actual = [
            state(3, None, true),
            state(4, None, true),
            state(5, None, false),
        ];
        let due = o.due(&actual, t0 + Duration::from_secs(1));
        assert_eq!(due, primed(4, Some(25)));
        assert_eq!(o.withheld(), HashSet::from([WgKey([5; 32])]));
        // Past the grace with no session: this end starts it.
        let due = o.due(&actual, t0 + AWAIT_GRACE);
        assert_eq!(due, primed(5, None));
        assert!(o.is_empty());
    }

    #[test]
    fn removed_or_vanished_peers_are_forgotten() {
        let s6 = spec(6, None);
        let mut o = Openings::default();
        let now = Instant::now();
        o.record(
            &[PeerOp::Add(NewPeer {
                spec: &s6,
                first: FirstHandshake::Theirs,
            })],
            now,
        );
        o.record(&[PeerOp::Remove(WgKey([6; 32]))], now);
        assert!(o.is_empty());
        o.record(
            &[PeerOp::Add(NewPeer {
                spec: &s6,
                first: FirstHandshake::Ours,
            })],
            now,
        );
        assert!(o.due(&[], now).is_empty());
        assert!(o.is_empty());
    }
}
