//! Rotating this node's WireGuard key (`weft wireguard rotate-key`, the
//! `--wireguard-key-rotation` schedule). The order of the steps is the whole
//! design, explained in docs/wireguard.md ("Key rotation"):
//!
//! 1. write the new key file (the commit point: a crash before it keeps the
//!    old key, a crash after it restarts on the new one);
//! 2. switch every device to the new key: the kernel keeps accepting what
//!    peers still send on the old sessions and queues what this node sends
//!    until a peer handshakes with the new key;
//! 3. publish the new public key in the lease (the caller): peers replace
//!    the old key's peer entry by the new key's, networks included, in one
//!    change, and their next packet starts the new session.
//!
//! Publishing before switching would lose packets: a peer that moved its
//! networks to the new key would drop what this node still sends with the
//! old one (WireGuard checks a packet's source against the peer it came
//! from), and its handshakes would reach a device that cannot answer them.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use weft_core::backend_data::WireguardData;
use weft_core::lease::RawJson;
use weft_core::status::WgPeerView;
use weft_dataplane::wireguard::{key_made_at, stage_key_file};

use super::wireguard::WireguardState;

/// How long a rotation counts as in progress at most: peers that have not
/// handshaken with the new key by then are down, or flannel nodes that
/// learn it at their next lease event.
const ROTATION_BOUND: Duration = Duration::from_secs(180);

/// A session older than this is dead (WireGuard's REJECT_AFTER_TIME): a
/// peer whose last handshake is older had nothing to move to the new key,
/// and handshakes with it when it next sends.
const SESSION_LIFETIME: Duration = Duration::from_secs(180);

/// What `weft status` and the metrics say about rotations.
#[derive(Debug, Clone, Default)]
pub struct RotationState {
    /// When the current key was made (the key file's time).
    pub key_made: Option<SystemTime>,
    /// Set at a switch, cleared once every peer that had a live session
    /// then has handshaken since.
    pub in_progress_since: Option<SystemTime>,
    /// The peers (device, public key) the rotation waits for: those with
    /// a live session at the switch. An idle peer does not hold it.
    pub awaiting: Vec<(String, String)>,
    /// `--wireguard-key-rotation`: rotate once the key is this old.
    pub period: Option<Duration>,
    /// After a scheduled rotation failed, none is tried before this, so
    /// that a full disk does not make every tick try (and log) again.
    pub not_before: Option<SystemTime>,
}

/// How long the schedule waits after a failed rotation.
const RETRY_AFTER: Duration = Duration::from_secs(60);

impl RotationState {
    pub fn new(key_path: &Path, period: Option<Duration>) -> RotationState {
        RotationState {
            key_made: key_made_at(key_path).ok(),
            in_progress_since: None,
            awaiting: Vec::new(),
            period,
            not_before: None,
        }
    }

    /// Whether the schedule rotates now: a period is set, the key is at
    /// least that old (by the key file's time, so the age counts across
    /// restarts: a node down past its period rotates as it starts), no
    /// rotation is still waiting for peers, and no failure is being
    /// waited out. A key of unknown age (its file's time unreadable) or
    /// from the future (the clock went back) is not rotated: the schedule
    /// would otherwise rotate at every tick.
    pub fn due(&self, now: SystemTime) -> bool {
        let (Some(period), Some(made)) = (self.period, self.key_made) else {
            return false;
        };
        self.in_progress_since.is_none()
            && self.not_before.is_none_or(|t| now >= t)
            && now.duration_since(made).is_ok_and(|age| age >= period)
    }

    /// A scheduled rotation failed at `now`: wait before the next try.
    pub fn failed(&mut self, now: SystemTime) {
        self.not_before = Some(now + RETRY_AFTER);
    }

    /// A switch to a new key at `now`: the rotation is in progress until
    /// every peer with a live session (a handshake within
    /// [`SESSION_LIFETIME`]) has handshaken again.
    pub fn start(&mut self, peers: &[WgPeerView], now: SystemTime) {
        let live_after = unix(now).saturating_sub(SESSION_LIFETIME.as_secs());
        self.in_progress_since = Some(now);
        self.awaiting = peers
            .iter()
            .filter(|p| p.last_handshake_unix.is_some_and(|t| t >= live_after))
            .map(|p| (p.device.clone(), p.public_key.clone()))
            .collect();
    }

    /// Ends the rotation once every awaited peer has handshaken since the
    /// switch (so has the new key) or left, or once [`ROTATION_BOUND`] has
    /// passed.
    pub fn observe(&mut self, peers: &[WgPeerView], now: SystemTime) {
        let Some(since) = self.in_progress_since else {
            return;
        };
        let since_unix = unix(since);
        let all = self.awaiting.iter().all(|(device, key)| {
            peers
                .iter()
                .find(|p| p.device == *device && p.public_key == *key)
                .is_none_or(|p| p.last_handshake_unix.is_some_and(|t| t >= since_unix))
        });
        let expired = now.duration_since(since).unwrap_or_default() >= ROTATION_BOUND;
        if all || expired {
            if expired && !all {
                tracing::warn!(
                    "WireGuard key rotation: some peers have not handshaken with the new key after {}s (down, or flannel nodes that have not re-read the lease yet)",
                    ROTATION_BOUND.as_secs()
                );
            } else {
                tracing::info!(
                    "WireGuard key rotation complete: every peer that was talking to this node uses the new key"
                );
            }
            self.in_progress_since = None;
            self.awaiting.clear();
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The answer to one rotation request: the new public key, or why not.
pub type RotateReply = tokio::sync::oneshot::Sender<Result<String, String>>;

/// A request to publish another public address (`weft public-ip`), with
/// where the answer goes: the address published, or why not.
pub type PublicIpRequest = (std::net::IpAddr, RotateReply);

/// What the lease must publish at once rather than at the next renewal:
/// the BackendData for each family after a key rotation, or the public
/// address after the external interface was renumbered. `None`: unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    pub v4: Option<RawJson>,
    pub v6: Option<RawJson>,
    pub public_ip: Option<std::net::Ipv4Addr>,
    pub public_ipv6: Option<std::net::Ipv6Addr>,
}

impl WireguardState {
    /// Rotates the key: new key file, then every device switched. Returns
    /// what the lease must now publish. On an error before the file was
    /// replaced nothing changed; after it, the devices that could not be
    /// switched are reopened by the next pass (and a restart uses the file).
    pub async fn rotate(&mut self) -> Result<Published> {
        if self.rotation.in_progress_since.is_some() {
            anyhow::bail!(
                "a key rotation is still in progress (waiting for every peer to handshake with the new key): try again when `weft status` no longer says so"
            );
        }
        let failed_write = || {
            format!(
                "cannot write a new key to {} (the old key stays)",
                self.key_path.display()
            )
        };
        let staged = stage_key_file(&self.key_path).with_context(failed_write)?;
        stall_for_tests("before-commit").await;
        let key = staged.commit().with_context(failed_write)?;
        stall_for_tests("after-commit").await;
        let now = SystemTime::now();
        self.rotation.key_made = key_made_at(&self.key_path).ok().or(Some(now));
        // The devices' own word on who talks to this node now (the status
        // view can be a tick old: a session started since would be missed).
        let (peers, _) = self.read_views().await;
        self.rotation.start(&peers, now);
        let mut failed = Vec::new();
        for (name, device) in self.devices.iter_mut() {
            let port = self.ports.get(name).copied().unwrap_or_default();
            if let Err(e) = device.set_private_key(&key, port).await {
                tracing::error!(device = %name, "cannot switch the device to the new WireGuard key: {e}; reopening it");
                failed.push(name.clone());
            }
        }
        for name in failed {
            if let Some(dead) = self.devices.remove(&name) {
                let _ = dead.close().await;
            }
        }
        self.key = key;
        tracing::info!(public_key = %self.key.public_key(), "WireGuard key rotated: devices switched, publishing the new public key");
        stall_for_tests("after-switch").await;
        Ok(self.published())
    }

    pub fn public_key(&self) -> weft_core::wg_key::WgKey {
        self.key.public_key()
    }

    /// Ends a rotation whose peers have all handshaken with the new key.
    pub fn observe_rotation(&mut self) {
        let views = self.views();
        let peers = views.lock().map(|v| v.clone()).unwrap_or_default();
        self.rotation.observe(&peers, SystemTime::now());
    }

    /// The BackendData this node publishes for its current key.
    pub fn published(&self) -> Published {
        let public_key = self.key.public_key();
        let data = |port: Option<u16>| port.map(|port| WireguardData { public_key, port }.encode());
        Published {
            v4: data(self.publish.0),
            v6: data(self.publish.1),
            ..Published::default()
        }
    }
}

/// A test hook: with `WEFTD_TEST_ROTATION_STALL=<step>` set (`before-commit`:
/// the new key staged in its temporary file; `after-commit`: renamed into
/// place; `after-switch`: set on the devices, not yet published), a debug
/// build stops at that step of a rotation forever, so that the SIGKILL tests can
/// kill the agent exactly there. Release builds never read the variable.
async fn stall_for_tests(step: &str) {
    if cfg!(debug_assertions) && std::env::var("WEFTD_TEST_ROTATION_STALL").is_ok_and(|s| s == step)
    {
        tracing::warn!(
            step,
            "stalling the key rotation (WEFTD_TEST_ROTATION_STALL)"
        );
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(handshake: Option<u64>) -> WgPeerView {
        keyed("k", handshake)
    }

    fn keyed(key: &str, handshake: Option<u64>) -> WgPeerView {
        WgPeerView {
            device: "flannel-wg".into(),
            public_key: key.into(),
            endpoint: None,
            allowed_ips: vec![],
            last_handshake_unix: handshake,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    /// The rotation waits for the peers that were talking to this node at
    /// the switch, until each has handshaken again (or left); a peer idle
    /// for longer than a session lives, or one that never handshook, has
    /// nothing to move and does not hold it.
    #[test]
    fn a_rotation_ends_when_every_talking_peer_has_handshaken_since() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut r = RotationState::default();
        r.start(
            &[
                keyed("a", Some(990)),
                keyed("b", Some(900)),
                keyed("idle", Some(500)),
                keyed("never", None),
            ],
            at(1000),
        );
        assert_eq!(r.awaiting.len(), 2, "{:?}", r.awaiting);
        r.observe(
            &[
                keyed("a", Some(1001)),
                keyed("b", Some(900)),
                keyed("idle", Some(500)),
            ],
            at(1005),
        );
        assert!(r.in_progress_since.is_some(), "b is still on the old key");
        r.observe(&[keyed("a", Some(1001)), keyed("b", None)], at(1006));
        assert!(r.in_progress_since.is_some());
        r.observe(
            &[
                keyed("a", Some(1001)),
                keyed("b", Some(1002)),
                keyed("never", None),
            ],
            at(1007),
        );
        assert!(r.in_progress_since.is_none());
        assert!(r.awaiting.is_empty());

        // A talking peer that leaves does not hold it either.
        r.start(&[keyed("a", Some(1001))], at(1100));
        r.observe(&[], at(1101));
        assert!(r.in_progress_since.is_none());
    }

    fn scheduled(period: u64, made: u64) -> RotationState {
        RotationState {
            key_made: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(made)),
            period: Some(Duration::from_secs(period)),
            ..RotationState::default()
        }
    }

    #[test]
    fn the_schedule_rotates_a_key_once_it_is_a_period_old() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let r = scheduled(100, 1000);
        assert!(!r.due(at(1099)));
        assert!(r.due(at(1100)));
        assert!(
            r.due(at(5000)),
            "a node down past its period rotates at once"
        );
        assert!(
            !r.due(at(900)),
            "a key from the future (the clock went back)"
        );
        let off = RotationState {
            period: None,
            ..scheduled(100, 1000)
        };
        assert!(!off.due(at(1_000_000)), "no period: never");
        let unknown = RotationState {
            key_made: None,
            ..scheduled(100, 1000)
        };
        assert!(!unknown.due(at(1_000_000)), "a key of unknown age");
    }

    #[test]
    fn the_schedule_waits_for_a_rotation_in_progress_and_after_a_failure() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut r = scheduled(100, 1000);
        r.in_progress_since = Some(at(1000));
        assert!(!r.due(at(2000)), "peers have not all moved yet");
        r.in_progress_since = None;
        r.failed(at(2000));
        assert!(!r.due(at(2000 + RETRY_AFTER.as_secs() - 1)));
        assert!(r.due(at(2000 + RETRY_AFTER.as_secs())));
    }

    #[test]
    fn a_rotation_ends_after_the_bound_whatever_the_peers() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut r = RotationState::default();
        r.start(&[peer(Some(999))], since);
        r.observe(
            &[peer(Some(999))],
            since + ROTATION_BOUND - Duration::from_secs(1),
        );
        assert!(r.in_progress_since.is_some());
        r.observe(&[peer(Some(999))], since + ROTATION_BOUND);
        assert!(r.in_progress_since.is_none());
    }
}
