//! The vxlan devices' TX checksum offload: off by default in weft (the
//! "UDP: bad checksum" drops of flannel #1279), on when an operator chose
//! `TxChecksumOffload: true` for throughput. On only risks the old bug on
//! kernels without its fix, so only that combination is a warning.

use weft_dataplane::netlink::Netlink;

use super::Finding;

/// The first kernel release with the fix everywhere (5.6.13 and the
/// 5.4.41 / 4.19.123 / 4.14.181 backports are not told apart here: an
/// older kernel is flagged as possibly affected).
const FIXED_IN: (u32, u32) = (5, 7);

/// One finding per vxlan device on this node (none before weft ran).
pub fn findings() -> Vec<Finding> {
    let kernel = kernel_release();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        let Ok(nl) = Netlink::connect() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for link in nl.links().await.unwrap_or_default() {
            if link.vxlan().is_none() {
                continue;
            }
            let name = format!("checksum offload {}", link.name);
            match nl.tx_checksum(&link.name).await {
                Ok(on) => out.push(judge(&name, &link.name, on, &kernel)),
                Err(e) => out.push(Finding::warn(
                    &name,
                    format!("cannot read {}'s features: {e}", link.name),
                    format!("ethtool -k {} | grep tx-checksum", link.name),
                )),
            }
        }
        out
    })
}

fn judge(name: &str, device: &str, on: bool, kernel: &str) -> Finding {
    if !on {
        return Finding::ok(
            name,
            format!(
                "TX checksum offload off on {device} (weft's default against flannel #1279; \
                 it costs vxlan throughput, see docs/backends.md)"
            ),
        );
    }
    if fixed(kernel) {
        Finding::ok(
            name,
            format!(
                "TX checksum offload on on {device} (TxChecksumOffload: true); kernel {kernel} has the #1279 fix"
            ),
        )
    } else {
        Finding::warn(
            name,
            format!(
                "TX checksum offload on on {device} and kernel {kernel} may lack the fix for \
                 flannel #1279 (VXLAN + SNAT: \"UDP: bad checksum\", connections hanging 63 s)"
            ),
            "remove \"TxChecksumOffload\": true from net-conf.json's Backend (weft then turns it off), \
             or upgrade the kernel",
        )
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `release` (`6.18.44-…`) is at least [`FIXED_IN`]; an unreadable
/// release counts as not fixed.
fn fixed(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= FIXED_IN,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Level;

    #[test]
    fn only_offload_on_an_unfixed_kernel_warns() {
        assert_eq!(judge("n", "flannel.1", false, "4.14.0").level, Level::Ok);
        assert_eq!(judge("n", "flannel.1", true, "6.18.44-fc").level, Level::Ok);
        assert_eq!(judge("n", "flannel.1", true, "5.7.0").level, Level::Ok);
        let old = judge("n", "flannel.1", true, "5.4.0-42-generic");
        assert_eq!(old.level, Level::Warn);
        assert!(old.fix.unwrap_or_default().contains("TxChecksumOffload"));
        assert_eq!(judge("n", "flannel.1", true, "garbage").level, Level::Warn);
    }
}
