//! Whether a vxlan device keeps its TX checksum offload: the one place that
//! lists the kernels and underlay drivers known to send VXLAN packets with
//! bad checksums when it is on.
//!
//! Why it matters both ways: with offload off the kernel cannot pass TCP
//! segmentation offload through `flannel.1`, and pod → pod throughput drops
//! to a fraction of the underlay's (docs/backends.md); with offload on, the
//! nodes below drop packets ("UDP: bad checksum") and connections hang.
//! So weft keeps it on unless the node shows one of these:
//!
//! - a kernel without the fix for flannel #1279 (VXLAN + SNAT by
//!   kube-proxy): fixed in 5.7 and backported to 5.6.13, 5.4.41, 4.19.123
//!   and 4.14.181. A release that cannot be read as a version counts as
//!   unfixed; so do distribution kernels that carry the fix under an older
//!   patch number (Ubuntu's `5.4.0-42`): off is slow but never wrong.
//! - an underlay interface driven by a driver in [`BAD_DRIVERS`].
//!
//! An explicit `TxChecksumOffload` in net-conf.json always wins. The module
//! is pure (the agent and `weft check` read the release and the driver), so
//! every branch is tested here.

use std::fmt;

/// The first mainline release with the #1279 fix.
pub const FIXED_IN: (u32, u32) = (5, 7);

/// Stable series that received the fix: `(major, minor, first fixed patch)`.
pub const BACKPORTS: &[(u32, u32, u32)] = &[(5, 6, 13), (5, 4, 41), (4, 19, 123), (4, 14, 181)];

/// Underlay NIC drivers that corrupt the checksums of VXLAN packets the
/// stack leaves to them, with where that was seen.
pub const BAD_DRIVERS: &[(&str, &str)] = &[(
    "vmxnet3",
    "VMware deployments drop VXLAN packets for bad checksums with offload on \
     (kURL #5041 turns it off on every vmxnet3 node; talos #10238)",
)];

/// Why [`decide`] chose what it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `TxChecksumOffload` was set in net-conf.json.
    Explicit,
    /// The kernel predates the #1279 fix.
    KernelUnfixed { release: String },
    /// The kernel release could not be read as `major.minor[.patch]`.
    KernelUnreadable { release: String },
    /// The underlay's driver is in [`BAD_DRIVERS`].
    BadDriver { driver: String, why: &'static str },
    /// Nothing known against offload on this node. `driver` is `None` when
    /// it could not be read (virtual devices, old kernels): only listed
    /// drivers turn offload off.
    Safe {
        release: String,
        driver: Option<String>,
    },
}

/// Offload on or off, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub on: bool,
    pub reason: Reason,
}

/// The choice for a node running `kernel_release` (`uname -r`) whose
/// external interface uses `driver` (`ethtool -i`), given net-conf's
/// `TxChecksumOffload` (`explicit`).
pub fn decide(kernel_release: &str, driver: Option<&str>, explicit: Option<bool>) -> Decision {
    if let Some(on) = explicit {
        return Decision {
            on,
            reason: Reason::Explicit,
        };
    }
    let release = kernel_release.to_owned();
    let reason = match kernel_version(kernel_release) {
        None => Reason::KernelUnreadable { release },
        Some(v) if !has_fix(v) => Reason::KernelUnfixed { release },
        Some(_) => match driver.and_then(bad_driver) {
            Some((name, why)) => Reason::BadDriver {
                driver: name.to_owned(),
                why,
            },
            None => Reason::Safe {
                release,
                driver: driver.map(str::to_owned),
            },
        },
    };
    Decision {
        on: matches!(reason, Reason::Safe { .. }),
        reason,
    }
}

/// Whether kernel `(major, minor, patch)` has the #1279 fix.
fn has_fix((major, minor, patch): (u32, u32, u32)) -> bool {
    (major, minor) >= FIXED_IN
        || BACKPORTS
            .iter()
            .any(|&(ma, mi, p)| (ma, mi) == (major, minor) && patch >= p)
}

/// `6.1.0-28-amd64` → `(6, 1, 0)`; the patch defaults to 0 (`4.19`).
fn kernel_version(release: &str) -> Option<(u32, u32, u32)> {
    let end = release
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(release.len());
    let mut parts = release[..end].split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = match parts.next() {
        Some(p) => p.ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

fn bad_driver(driver: &str) -> Option<(&'static str, &'static str)> {
    BAD_DRIVERS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(driver.trim()))
        .copied()
}

/// `on (kernel 6.1.0-28-amd64, driver virtio_net)` or `off: <why>`: what
/// the agent logs and `weft check` shows.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.on { "on" } else { "off" };
        match &self.reason {
            Reason::Explicit => write!(
                f,
                "{state}: TxChecksumOffload is {} in net-conf.json",
                self.on
            ),
            Reason::KernelUnfixed { release } => write!(
                f,
                "{state}: kernel {release} may lack the fix for flannel #1279 \
                 (in 5.7, 5.6.13, 5.4.41, 4.19.123, 4.14.181)"
            ),
            Reason::KernelUnreadable { release } => write!(
                f,
                "{state}: kernel release {release:?} is not a version, so it may lack the fix \
                 for flannel #1279"
            ),
            Reason::BadDriver { driver, why } => {
                write!(f, "{state}: underlay driver {driver}: {why}")
            }
            Reason::Safe { release, driver } => write!(
                f,
                "{state} (kernel {release}, driver {})",
                driver.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(release: &str, driver: Option<&str>) -> bool {
        decide(release, driver, None).on
    }

    #[test]
    fn kernels_from_5_7_keep_offload_on() {
        for release in [
            "5.7.0",
            "5.8.0-63-generic",
            "6.1.0-28-amd64",
            "6.18.44-fc-v1300",
            "10.0",
        ] {
            assert!(on(release, Some("virtio_net")), "{release}");
        }
        let d = decide("6.1.0-28-amd64", Some("virtio_net"), None);
        assert_eq!(
            d.reason,
            Reason::Safe {
                release: "6.1.0-28-amd64".into(),
                driver: Some("virtio_net".into())
            }
        );
        assert_eq!(
            d.to_string(),
            "on (kernel 6.1.0-28-amd64, driver virtio_net)"
        );
    }

    /// Fails unless a virtio_net node on `release` is decided off for
    /// `reason`.
    #[track_caller]
    fn decided_off_because(release: &str, reason: Reason) {
        let d = decide(release, Some("virtio_net"), None);
        assert!(!d.on, "{release:?}");
        assert_eq!(d.reason, reason);
    }

    #[test]
    fn kernels_before_5_7_turn_it_off() {
        for release in [
            "5.6.0",
            "5.5.19",
            "5.0.0",
            "4.20.17",
            "4.9.337",
            "3.10.0-1160.el7.x86_64",
        ] {
            decided_off_because(
                release,
                Reason::KernelUnfixed {
                    release: release.into(),
                },
            );
        }
        assert!(
            decide("4.4.0", None, None)
                .to_string()
                .starts_with("off: kernel 4.4.0 may lack the fix for flannel #1279")
        );
    }

    #[test]
    fn backports_count_from_their_first_fixed_patch() {
        for (fixed, unfixed) in [
            ("5.6.13", "5.6.12"),
            ("5.4.41", "5.4.40"),
            ("4.19.123", "4.19.122"),
            ("4.14.181", "4.14.180"),
        ] {
            assert!(on(fixed, None), "{fixed}");
            assert!(!on(unfixed, None), "{unfixed}");
        }
        assert!(on("5.4.280-1-lts", None));
        // A distribution kernel hiding its backports behind patch 0 stays off.
        assert!(!on("5.4.0-42-generic", None));
        // A series without a backport.
        assert!(!on("5.5.999", None));
    }

    #[test]
    fn an_unreadable_release_turns_it_off() {
        for release in ["", "garbage", "6", "6.x", "v6.1.0", "6.1.x"] {
            decided_off_because(
                release,
                Reason::KernelUnreadable {
                    release: release.into(),
                },
            );
        }
        assert!(
            decide("garbage", None, None)
                .to_string()
                .contains("\"garbage\" is not a version")
        );
    }

    #[test]
    fn vmxnet3_turns_it_off_on_a_fixed_kernel() {
        for driver in ["vmxnet3", "VMXNET3", " vmxnet3\n"] {
            let d = decide("6.8.0-45-generic", Some(driver), None);
            assert!(!d.on, "{driver:?}");
            assert!(matches!(&d.reason, Reason::BadDriver { driver, .. } if driver == "vmxnet3"));
        }
        let shown = decide("6.8.0", Some("vmxnet3"), None).to_string();
        assert!(
            shown.starts_with("off: underlay driver vmxnet3: "),
            "{shown}"
        );
        assert!(shown.contains("kURL #5041"), "{shown}");
    }

    #[test]
    fn unknown_and_unreadable_drivers_keep_it_on() {
        for driver in [Some("veth"), Some("e1000e"), Some("ena"), Some(""), None] {
            assert!(on("6.1.0", driver), "{driver:?}");
        }
        assert_eq!(
            decide("6.1.0", None, None).to_string(),
            "on (kernel 6.1.0, driver unknown)"
        );
    }

    #[test]
    fn an_explicit_setting_wins_both_ways() {
        let d = decide("4.4.0", Some("vmxnet3"), Some(true));
        assert_eq!((d.on, &d.reason), (true, &Reason::Explicit));
        assert_eq!(
            d.to_string(),
            "on: TxChecksumOffload is true in net-conf.json"
        );
        let d = decide("6.18.0", Some("virtio_net"), Some(false));
        assert_eq!((d.on, &d.reason), (false, &Reason::Explicit));
        assert_eq!(
            d.to_string(),
            "off: TxChecksumOffload is false in net-conf.json"
        );
    }
}
