//! [`WgDevice`]: one device on either path, chosen at `open`.

use std::fmt;
use std::path::Path;

use std::time::Instant;

use weft_core::wg_key::WgKey;

use super::diff::Opening;
use super::key::PrivateKey;
use super::opening::Openings;
use super::roaming::LeaseEndpoints;
use super::{
    PathPolicy, PeerChanges, WgDeviceSpec, WgError, WgPath, WgPeerSpec, WgPeerState, diff, kernel,
    userspace,
};
use crate::netlink::{LinkKind, Netlink};

/// A handle on one WireGuard device, on either path.
///
/// Send and Sync: the agent keeps it in its reconciler on a multi-thread
/// runtime. Dropping it without [`WgDevice::close`] still stops a userspace
/// device (and removes its socket), from the runtime it was opened on.
pub struct WgDevice {
    name: String,
    index: u32,
    inner: Inner,
    /// This device's public key: with the peer's, it decides who starts a
    /// new pair's session on the kernel path.
    own: WgKey,
    /// Serialises `apply_peers` and `open_sessions`: each diffs against
    /// what it read, so two interleaved calls could undo each other. Holds
    /// the kernel path's sessions still to start (empty on userspace).
    apply_lock: tokio::sync::Mutex<Openings>,
    /// The lease endpoints of the last `apply_peers`: a roamed endpoint is
    /// kept unless the lease itself moved (`wireguard/roaming.rs`).
    lease_endpoints: std::sync::Mutex<LeaseEndpoints>,
}

enum Inner {
    Kernel(kernel::KernelDevice),
    Userspace(userspace::UserspaceDevice),
}

impl fmt::Debug for WgDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgDevice")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("path", &self.path())
            .finish()
    }
}

impl WgDevice {
    /// Opens the device `spec.name`, creating it if needed, and sets its
    /// private key, listen port and MTU.
    ///
    /// With [`PathPolicy::Auto`] the kernel path is taken when a wireguard
    /// link can be created (or one of that name already exists), the
    /// userspace path otherwise; which one, and why, is logged once at info.
    /// An existing kernel device is reused with its peers (no flush at
    /// restart); a newly created one is left down, without addresses, as
    /// flannel orders it: the caller adds the address, then sets it up.
    ///
    /// `uapi_dir` is where the userspace device serves the standard UAPI
    /// socket `<name>.sock` ([`DEFAULT_UAPI_DIR`](super::DEFAULT_UAPI_DIR)
    /// for `wg` to find it). Lab nodes that share a filesystem need a
    /// directory each, or distinct device names: a socket another device
    /// still serves is never taken over.
    ///
    /// The device lives in the network namespace of the calling thread.
    pub async fn open(
        spec: &WgDeviceSpec,
        policy: PathPolicy,
        uapi_dir: &Path,
    ) -> Result<WgDevice, WgError> {
        validate_name(&spec.name)?;
        let device = spec.name.as_str();
        let nl = Netlink::connect().map_err(|source| WgError::Netlink {
            device: device.to_string(),
            op: "connecting to rtnetlink".into(),
            source,
        })?;
        let existing = nl
            .link_by_name(device)
            .await
            .map_err(|source| WgError::Netlink {
                device: device.to_string(),
                op: "looking up the link".into(),
                source,
            })?;
        let fallback_reason = match existing {
            Some(link) if link.kind == LinkKind::Wireguard => {
                if policy == PathPolicy::UserspaceOnly {
                    return Err(WgError::NameTaken {
                        device: device.to_string(),
                        kind: "wireguard".into(),
                        fix: "PathPolicy is UserspaceOnly: delete it (`ip link del`) or allow the kernel path".into(),
                    });
                }
                let reason = "the wireguard link already exists (reused with its peers)";
                return Self::open_kernel(&nl, spec, link.index, Some(link.mtu), reason).await;
            }
            // Only a userspace WireGuard can take a TUN device over (and
            // fails if another process still holds it).
            Some(link) if link.kind == LinkKind::Tun && policy != PathPolicy::KernelOnly => {
                "a TUN device of that name exists".to_string()
            }
            Some(link) => {
                return Err(WgError::NameTaken {
                    device: device.to_string(),
                    kind: link.kind.name().to_string(),
                    fix: "delete it or choose another device name".into(),
                });
            }
            None if policy == PathPolicy::UserspaceOnly => {
                "PathPolicy is UserspaceOnly".to_string()
            }
            None => match nl.create_wireguard(device, Some(spec.mtu)).await {
                Ok(index) => {
                    let reason = "the kernel has WireGuard";
                    let opened = Self::open_kernel(&nl, spec, index, None, reason).await;
                    if opened.is_err() {
                        // Leave no half-configured link for the next attempt.
                        let _ = nl.delete_link(index).await;
                    }
                    return opened;
                }
                Err(e) if e.is_not_supported() && policy == PathPolicy::KernelOnly => {
                    return Err(WgError::KernelUnavailable {
                        device: device.to_string(),
                        detail: e.to_string(),
                    });
                }
                Err(e) if e.is_not_supported() => format!("the kernel has no WireGuard ({e})"),
                Err(source) => {
                    return Err(WgError::Netlink {
                        device: device.to_string(),
                        op: "creating the wireguard link".into(),
                        source,
                    });
                }
            },
        };
        let (dev, index) = userspace::UserspaceDevice::open(&nl, spec, uapi_dir).await?;
        tracing::info!(
            device,
            path = %WgPath::Userspace,
            reason = %fallback_reason,
            uapi = %dev.socket_path().display(),
            "WireGuard device ready (in-process gotatun on TUN)"
        );
        Ok(WgDevice::ready(spec, index, Inner::Userspace(dev)))
    }

    /// The device of `spec` on link `index`, open on `inner`'s path, with no
    /// openings and no endpoints learnt yet.
    fn ready(spec: &WgDeviceSpec, index: u32, inner: Inner) -> WgDevice {
        WgDevice {
            name: spec.name.clone(),
            index,
            inner,
            own: spec.private_key.public_key(),
            apply_lock: tokio::sync::Mutex::new(Openings::default()),
            lease_endpoints: std::sync::Mutex::new(LeaseEndpoints::default()),
        }
    }

    /// The kernel path on link `index`: `current_mtu` is `Some` for a reused
    /// link (whose MTU may need changing), `None` for one just created.
    async fn open_kernel(
        nl: &Netlink,
        spec: &WgDeviceSpec,
        index: u32,
        current_mtu: Option<u32>,
        reason: &str,
    ) -> Result<WgDevice, WgError> {
        let device = spec.name.as_str();
        if current_mtu.is_some_and(|m| m != spec.mtu) {
            nl.set_link_mtu(index, spec.mtu)
                .await
                .map_err(|source| WgError::Netlink {
                    device: device.to_string(),
                    op: format!("setting mtu {}", spec.mtu),
                    source,
                })?;
        }
        let dev = kernel::KernelDevice::connect(device).await?;
        // A link weft just created has no peers: say so (flannel's
        // ReplacePeers). A reused one keeps its peers for apply_peers to diff.
        dev.configure(&spec.private_key, spec.listen_port, current_mtu.is_none())
            .await?;
        tracing::info!(device, path = %WgPath::Kernel, reason, "WireGuard device ready");
        Ok(WgDevice::ready(spec, index, Inner::Kernel(dev)))
    }

    /// Switches the device to a new private key (a key rotation), keeping
    /// its peers and listen port. What each implementation does with the
    /// sessions it holds is in docs/wireguard.md ("Key rotation"): the
    /// kernel stops sending on them but still accepts what arrives on them,
    /// and queues outgoing packets until a new handshake completes.
    pub async fn set_private_key(
        &mut self,
        key: &PrivateKey,
        listen_port: u16,
    ) -> Result<(), WgError> {
        let _guard = self.apply_lock.lock().await;
        match &self.inner {
            Inner::Kernel(k) => k.configure(key, listen_port, false).await?,
            Inner::Userspace(u) => u.set_private_key(key).await?,
        }
        self.own = key.public_key();
        Ok(())
    }

    /// Which implementation runs this device (for the log, a metric and
    /// `weft status`).
    pub fn path(&self) -> WgPath {
        match self.inner {
            Inner::Kernel(_) => WgPath::Kernel,
            Inner::Userspace(_) => WgPath::Userspace,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The link's interface index, for the caller's address and route work.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The peers as the device has them, with handshake times and counters.
    pub async fn peers(&self) -> Result<Vec<WgPeerState>, WgError> {
        match &self.inner {
            Inner::Kernel(k) => k.peers().await,
            Inner::Userspace(u) => Ok(u.peers().await),
        }
    }

    /// Makes the device's peers exactly `desired`: adds the missing ones,
    /// updates only what changed on the others (endpoint, allowed IPs —
    /// replaced as a whole —, PSK, keepalive), removes the rest. A peer that
    /// did not change is not touched, so its session survives. Returns what
    /// was done; a second call with the same input does nothing.
    ///
    /// Refuses (without changing anything) a desired set that names a public
    /// key twice, or gives one network to two peers: either would make the
    /// device flap between passes.
    ///
    /// On the kernel path a new peer's session is not left to whichever end
    /// has traffic first: see `wireguard/opening.rs`, and call
    /// [`WgDevice::open_sessions`] once the device is up.
    pub async fn apply_peers(&self, desired: &[WgPeerSpec]) -> Result<PeerChanges, WgError> {
        let mut openings = self.apply_lock.lock().await;
        let actual = self.peers().await?;
        let withheld = openings.withheld();
        let opening = match &self.inner {
            Inner::Kernel(_) => Opening::ByKey {
                own: self.own,
                withheld: &withheld,
            },
            Inner::Userspace(_) => Opening::Either,
        };
        let ops = {
            let endpoints = self
                .lease_endpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            diff::diff(
                &actual,
                desired,
                opening,
                endpoints.rule(std::time::SystemTime::now()),
            )
            .map_err(|reason| WgError::InvalidPeers {
                device: self.name.clone(),
                reason,
            })?
        };
        if !ops.is_empty() {
            match &self.inner {
                Inner::Kernel(k) => k.apply(&ops).await?,
                Inner::Userspace(u) => u.apply(&ops).await?,
            }
        }
        self.lease_endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remember(desired);
        if ops.is_empty() {
            return Ok(PeerChanges::default());
        }
        openings.record(&ops, Instant::now());
        let changes = diff::changes(&ops);
        tracing::debug!(
            device = %self.name,
            added = changes.added,
            updated = changes.updated,
            removed = changes.removed,
            "WireGuard peers applied"
        );
        Ok(changes)
    }

    /// How many of `peers` (read from this device) WireGuard found at
    /// another endpoint than their lease's, with a live session: the
    /// endpoints the last [`WgDevice::apply_peers`] left alone.
    pub fn peers_reached_elsewhere(&self, peers: &[WgPeerState]) -> usize {
        self.lease_endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reached_elsewhere(peers, std::time::SystemTime::now())
    }

    /// Starts the sessions this end owes (kernel path): new peers whose
    /// public key sorts above ours, as soon as the device is up; peers whose
    /// other end has not started one within the grace (a flannel node, or
    /// a node holding a session with a device of ours that was recreated).
    /// Call after each pass has brought the device up, and every few
    /// seconds. Returns how many peers were primed; nothing is read from
    /// the device when nothing is pending.
    pub async fn open_sessions(&self) -> Result<usize, WgError> {
        let Inner::Kernel(k) = &self.inner else {
            return Ok(0);
        };
        let mut openings = self.apply_lock.lock().await;
        if openings.is_empty() {
            return Ok(0);
        }
        let actual = k.peers().await?;
        let due = openings.due(&actual, Instant::now());
        if due.is_empty() {
            return Ok(0);
        }
        k.prime(&due).await?;
        tracing::debug!(device = %self.name, peers = due.len(), "started WireGuard sessions");
        Ok(due.len())
    }

    /// Lets go of the device.
    ///
    /// Userspace: stops the tunnel, removes the UAPI socket, and waits for
    /// the TUN link to disappear (so that a new `open` of the same name can
    /// follow at once). Kernel: the link stays, with its peers, so that a
    /// restarting agent loses no traffic; deleting it is the caller's call
    /// (flannel deletes its wireguard devices on shutdown:
    /// [`Netlink::delete_link`] with [`WgDevice::index`]).
    pub async fn close(self) -> Result<(), WgError> {
        match self.inner {
            Inner::Kernel(_) => Ok(()),
            Inner::Userspace(u) => u.close().await,
        }
    }
}

/// Device names end up in a socket path and in TUN ioctls: refuse anything
/// that is not a plain Linux interface name.
fn validate_name(name: &str) -> Result<(), WgError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(WgError::InvalidName {
            device: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::DEFAULT_UAPI_DIR;

    #[test]
    fn names_are_plain_interface_names() {
        assert!(validate_name("flannel-wg").is_ok());
        assert!(validate_name("flannel-wg-v6").is_ok());
        for bad in ["", "..", "a/b", "0123456789abcdef", "wg 0", "wg\n"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    fn assert_send<T: Send>(_: &T) {}

    fn assert_send_sync<T: Send + Sync>(_: &T) {}

    /// The agent drives these from a multi-thread runtime. Type-checked,
    /// never run.
    #[allow(dead_code)]
    fn futures_are_send(dev: &WgDevice, spec: &WgDeviceSpec, peers: &[WgPeerSpec]) {
        assert_send_sync(dev);
        let dir = Path::new(DEFAULT_UAPI_DIR);
        assert_send(&WgDevice::open(spec, PathPolicy::Auto, dir));
        assert_send(&dev.apply_peers(peers));
        assert_send(&dev.peers());
    }
}
