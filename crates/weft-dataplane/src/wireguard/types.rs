//! The values the WireGuard layer takes and gives: which path, which
//! policy, the device and peer specs, the peers as read back.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::SystemTime;

use ipnet::IpNet;
use weft_core::wg_key::WgKey;

use super::PrivateKey;

/// Which implementation runs a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgPath {
    /// The kernel's WireGuard, configured over generic netlink.
    Kernel,
    /// gotatun in this process, on a TUN device.
    Userspace,
}

impl fmt::Display for WgPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WgPath::Kernel => "kernel",
            WgPath::Userspace => "userspace",
        })
    }
}

/// Which paths [`WgDevice::open`](super::WgDevice::open) may take.
///
/// Why an option: some operators must not run WireGuard crypto in a process
/// (compliance, or a preference for the audited kernel code); they get a
/// clear error instead of a silent fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathPolicy {
    /// The kernel when it has WireGuard, userspace otherwise.
    #[default]
    Auto,
    /// The kernel or an error.
    KernelOnly,
    /// Always userspace, even when the kernel has WireGuard.
    UserspaceOnly,
}

impl fmt::Display for PathPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathPolicy::Auto => "auto",
            PathPolicy::KernelOnly => "kernel",
            PathPolicy::UserspaceOnly => "userspace",
        })
    }
}

impl FromStr for PathPolicy {
    type Err = String;

    /// Parses the spelling [`Display`](fmt::Display) writes, for flags and
    /// config files.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(PathPolicy::Auto),
            "kernel" => Ok(PathPolicy::KernelOnly),
            "userspace" => Ok(PathPolicy::UserspaceOnly),
            other => Err(format!(
                "unknown WireGuard implementation {other:?}: use auto, kernel or userspace"
            )),
        }
    }
}

/// What a device is: name, port, MTU, key. Addresses and routes are the
/// caller's.
#[derive(Debug, Clone)]
pub struct WgDeviceSpec {
    /// `flannel-wg` or `flannel-wg-v6` in flannel's naming.
    pub name: String,
    pub listen_port: u16,
    /// Underlay MTU − 80, as flannel computes it.
    pub mtu: u32,
    pub private_key: PrivateKey,
}

/// A peer as the planner wants it.
#[derive(Clone, PartialEq, Eq)]
pub struct WgPeerSpec {
    pub public_key: WgKey,
    pub endpoint: SocketAddr,
    /// Compared as a set of networks (host bits cleared), as the kernel
    /// stores them.
    pub allowed_ips: Vec<IpNet>,
    /// flannel's cluster-wide `PSK`. An all-zero key means none.
    pub psk: Option<WgKey>,
    /// Seconds; `None` and `Some(0)` both mean disabled.
    pub keepalive: Option<u16>,
}

/// A peer as the device reports it.
#[derive(Clone, PartialEq, Eq)]
pub struct WgPeerState {
    pub public_key: WgKey,
    /// Where the peer was last seen (roaming updates it), or was told to be.
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    /// Read back so that a PSK change can be detected; redacted in `Debug`.
    pub psk: Option<WgKey>,
    /// Wall-clock time of the last completed handshake; `None` if never.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub keepalive: Option<u16>,
}

/// Redacts a pre-shared key in `Debug` output.
fn psk_shown(psk: &Option<WgKey>) -> &'static str {
    if psk.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

impl fmt::Debug for WgPeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgPeerSpec")
            .field("public_key", &self.public_key)
            .field("endpoint", &self.endpoint)
            .field("allowed_ips", &self.allowed_ips)
            .field("psk", &format_args!("{}", psk_shown(&self.psk)))
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl fmt::Debug for WgPeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgPeerState")
            .field("public_key", &self.public_key)
            .field("endpoint", &self.endpoint)
            .field("allowed_ips", &self.allowed_ips)
            .field("psk", &format_args!("{}", psk_shown(&self.psk)))
            .field("last_handshake", &self.last_handshake)
            .field("rx_bytes", &self.rx_bytes)
            .field("tx_bytes", &self.tx_bytes)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

/// What [`WgDevice::apply_peers`](super::WgDevice::apply_peers) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerChanges {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

impl PeerChanges {
    /// True when the device already matched.
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.updated == 0 && self.removed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_through_its_spelling() {
        for p in [
            PathPolicy::Auto,
            PathPolicy::KernelOnly,
            PathPolicy::UserspaceOnly,
        ] {
            assert_eq!(p.to_string().parse::<PathPolicy>(), Ok(p));
        }
        assert!("kernel-only".parse::<PathPolicy>().is_err());
    }

    #[test]
    fn debug_never_shows_a_psk() {
        let psk = WgKey([7; 32]);
        let spec = WgPeerSpec {
            public_key: WgKey([1; 32]),
            endpoint: SocketAddr::from(([192, 0, 2, 2], 51820)),
            allowed_ips: vec![],
            psk: Some(psk),
            keepalive: None,
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains(&psk.to_base64()), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
