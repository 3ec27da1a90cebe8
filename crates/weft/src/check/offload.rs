//! The vxlan devices' TX checksum offload: which way weft chooses on this
//! node and why (`weft_core::offload_policy`, the same function the agent
//! runs), and whether each vxlan device holds that choice.
//!
//! Off costs most of the vxlan throughput; on sends packets with bad
//! checksums on old kernels and some NIC drivers (flannel #1279). So the
//! choice is always shown with its reason, and only two things warn: an
//! explicit `TxChecksumOffload: true` on a node where weft would turn it
//! off, and a device that does not hold what weft chooses.

use weft_core::netconf::{BackendConfig, NetConfig};
use weft_core::offload_policy::{self, Decision};
use weft_dataplane::drvinfo;
use weft_dataplane::netlink::Netlink;

use super::Finding;

/// The choice for this node with net-conf `cfg` (none: the file was not
/// given or not valid, so `TxChecksumOffload` is taken as unset) and
/// external interface `external`; then one finding per vxlan device. None
/// for other backends.
pub fn findings(cfg: Option<&NetConfig>, external: Option<&str>) -> Vec<Finding> {
    let explicit = match cfg.map(|c| &c.backend) {
        None => None,
        Some(BackendConfig::Vxlan(o)) => o.tx_checksum_offload,
        Some(_) => return Vec::new(),
    };
    let kernel = kernel_release();
    let driver = external.and_then(|name| drvinfo::driver(name).ok().flatten());
    let decision = offload_policy::decide(&kernel, driver.as_deref(), explicit);
    let automatic = offload_policy::decide(&kernel, driver.as_deref(), None);
    let mut out = vec![choice(&decision, &automatic)];
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return out;
    };
    rt.block_on(async {
        let Ok(nl) = Netlink::connect() else {
            return;
        };
        for link in nl.links().await.unwrap_or_default() {
            if link.vxlan().is_none() {
                continue;
            }
            let name = format!("checksum offload {}", link.name);
            out.push(match nl.tx_checksum(&link.name).await {
                Ok(on) => device(&name, &link.name, on, &decision, cfg.is_some()),
                Err(e) => Finding::warn(
                    &name,
                    format!("cannot read {}'s features: {e}", link.name),
                    format!("ethtool -k {} | grep tx-checksum", link.name),
                ),
            });
        }
    });
    out
}

/// The choice and its reason; a warning only when net-conf forces offload
/// on where weft would turn it off (`automatic`).
fn choice(decision: &Decision, automatic: &Decision) -> Finding {
    const NAME: &str = "vxlan checksum offload";
    if decision.on && !automatic.on {
        return Finding::warn(
            NAME,
            format!("{decision}, but weft would turn it off here: {automatic}"),
            "remove \"TxChecksumOffload\": true from net-conf.json's Backend (weft then turns it \
             off on this node), or fix the kernel or driver named above",
        );
    }
    if !decision.on && automatic.on {
        return Finding::ok(
            NAME,
            format!(
                "{decision}; weft would keep it on here, and off costs most of the vxlan \
                 throughput (docs/backends.md)"
            ),
        );
    }
    Finding::ok(NAME, decision.to_string())
}

/// Whether vxlan device `device` holds the choice. With no net-conf given,
/// a difference may be the operator's `TxChecksumOffload`, so the fix says
/// to pass the file.
fn device(name: &str, device: &str, on: bool, decision: &Decision, with_conf: bool) -> Finding {
    let state = |on: bool| if on { "on" } else { "off" };
    if on == decision.on {
        return Finding::ok(
            name,
            format!("TX checksum offload {} on {device}, as chosen", state(on)),
        );
    }
    let fix = if with_conf {
        "restart weftd with this net-conf.json: it sets the device at every pass; \
         `ethtool -K <dev> tx-checksum-ip-generic on|off` by hand does not last"
    } else {
        "pass the net-conf.json weftd reads with --net-config: TxChecksumOffload there may \
         explain it; else restart weftd"
    };
    Finding::warn(
        name,
        format!(
            "TX checksum offload {} on {device}, but weft chooses {} here ({decision})",
            state(on),
            state(decision.on)
        ),
        fix,
    )
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Level;
    use offload_policy::decide;

    /// Fails unless `f` is at `level` and what it saw says `text`.
    #[track_caller]
    fn assert_says(f: &Finding, level: Level, text: &str) {
        assert_eq!(f.level, level, "{}", f.seen);
        assert!(f.seen.contains(text), "{}", f.seen);
    }

    #[test]
    fn the_choice_is_shown_with_its_reason() {
        let d = decide("6.1.0-28-amd64", Some("virtio_net"), None);
        let f = choice(&d, &d);
        assert_eq!(f.level, Level::Ok);
        assert_eq!(f.seen, "on (kernel 6.1.0-28-amd64, driver virtio_net)");

        let d = decide("6.8.0", Some("vmxnet3"), None);
        let f = choice(&d, &d);
        assert_eq!(f.level, Level::Ok);
        assert!(
            f.seen.starts_with("off: underlay driver vmxnet3"),
            "{}",
            f.seen
        );

        let d = decide("5.4.0-42-generic", None, None);
        assert!(
            choice(&d, &d)
                .seen
                .starts_with("off: kernel 5.4.0-42-generic")
        );
    }

    #[test]
    fn only_forcing_it_on_where_weft_would_not_warns() {
        let auto = decide("4.19.0", Some("virtio_net"), None);
        let forced = decide("4.19.0", Some("virtio_net"), Some(true));
        let f = choice(&forced, &auto);
        assert_says(&f, Level::Warn, "kernel 4.19.0 may lack the fix");
        assert!(f.fix.unwrap_or_default().contains("TxChecksumOffload"));

        let auto = decide("6.1.0", Some("virtio_net"), None);
        let forced = decide("6.1.0", Some("virtio_net"), Some(false));
        assert_says(
            &choice(&forced, &auto),
            Level::Ok,
            "costs most of the vxlan throughput",
        );
    }

    #[test]
    fn a_device_that_differs_from_the_choice_warns() {
        let d = decide("6.1.0", Some("veth"), None);
        let ok = device("n", "flannel.1", true, &d, true);
        assert_eq!(ok.level, Level::Ok);
        assert_eq!(ok.seen, "TX checksum offload on on flannel.1, as chosen");
        let off = device("n", "flannel.1", false, &d, true);
        assert_says(&off, Level::Warn, "but weft chooses on here");
        assert!(off.fix.unwrap_or_default().contains("restart weftd"));
        let unsure = device("n", "flannel.1", false, &d, false);
        assert!(unsure.fix.unwrap_or_default().contains("--net-config"));
    }
}
