//! Kernel features, probed in a throwaway network namespace so the host is
//! never touched: can this kernel make a vxlan device, a WireGuard device,
//! an ipip device, a TUN device (for userspace WireGuard)?

use std::net::Ipv4Addr;
use std::path::Path;

use weft_core::netconf::{BackendConfig, NetConfig};
use weft_dataplane::netlink::{Netlink, VxlanLinkSpec};

use super::Finding;

enum Probe {
    Works,
    Missing(String),
    Error(String),
}

impl Probe {
    /// The finding `name`: `works` when the device could be created,
    /// `missing` of why when the kernel lacks it, and a warning when the
    /// probe itself failed.
    fn finding(self, name: &str, works: &str, missing: impl FnOnce(String) -> Finding) -> Finding {
        match self {
            Probe::Works => Finding::ok(name, works),
            Probe::Missing(e) => missing(e),
            Probe::Error(e) => {
                Finding::warn(name, format!("probe failed: {e}"), "run weft check as root")
            }
        }
    }
}

/// What each kind of device the backends use gave when created.
struct Probes {
    vxlan: Probe,
    wireguard: Probe,
    ipip: Probe,
}

/// Creates the devices inside a fresh namespace on a dedicated thread; the
/// namespace disappears with the thread.
fn probe_links() -> Result<Probes, String> {
    weft_dataplane::netns::with_runtime(&weft_dataplane::netns::Netns::Fresh, || async {
        let nl = Netlink::connect().map_err(|e| e.to_string())?;
        let vxlan = nl
            .create_vxlan(&VxlanLinkSpec {
                name: "probe.1".into(),
                vni: 1,
                port: 8472,
                local: "192.0.2.1"
                    .parse()
                    .map_err(|_| "bad probe address".to_owned())?,
                underlay_index: None,
                learning: false,
                gbp: false,
                mtu: 1450,
                mac: None,
            })
            .await;
        let wg = nl.create_wireguard("probe-wg", None).await;
        let ipip = nl
            .create_ipip("probe-ipip", Ipv4Addr::new(192, 0, 2, 1), 1480)
            .await;
        let judge = |r: Result<u32, weft_dataplane::netlink::NetlinkError>| match r {
            Ok(_) => Probe::Works,
            Err(e) if e.is_not_supported() => Probe::Missing(e.to_string()),
            Err(e) => Probe::Error(e.to_string()),
        };
        Ok(Probes {
            vxlan: judge(vxlan),
            wireguard: judge(wg),
            ipip: judge(ipip),
        })
    })
    .map_err(|e| format!("cannot probe in a throwaway namespace: {e}"))?
}

/// The kernel's findings; ipip's only when it is the configured backend
/// (no other backend needs it, and most kernels people run have it).
pub fn features(cfg: Option<&NetConfig>) -> Vec<Finding> {
    let mut out = Vec::new();
    match probe_links() {
        Ok(Probes {
            vxlan,
            wireguard: wg,
            ipip,
        }) => {
            if matches!(cfg.map(|c| &c.backend), Some(BackendConfig::Ipip(_))) {
                out.push(ipip.finding("kernel ipip", "ipip devices can be created", |e| {
                    Finding::fail(
                        "kernel ipip",
                        format!("no ipip support ({e}): the ipip backend cannot run here"),
                        "load the ipip module (modprobe ipip), or use the vxlan, host-gw or wireguard backend",
                    )
                }));
            }
            out.push(
                vxlan.finding("kernel vxlan", "vxlan devices can be created", |e| {
                    Finding::fail(
                        "kernel vxlan",
                        format!("no vxlan support: {e}"),
                        "load the vxlan module (modprobe vxlan) or use the host-gw backend",
                    )
                }),
            );
            out.push(wg.finding(
                "kernel wireguard",
                "the WireGuard module is present: the kernel path will be used",
                |_| {
                    Finding::warn(
                        "kernel wireguard",
                        "no WireGuard module: the wireguard backend falls back to weft's userspace implementation",
                        "load the wireguard module (modprobe wireguard) for kernel-speed encryption; nothing to do if userspace is acceptable",
                    )
                },
            ));
        }
        Err(e) => out.push(Finding::warn(
            "kernel features",
            format!("could not probe: {e}"),
            "run weft check as root",
        )),
    }
    out.push(if Path::new("/dev/net/tun").exists() {
        Finding::ok("tun device", "/dev/net/tun exists (userspace WireGuard can run)")
    } else {
        Finding::warn(
            "tun device",
            "/dev/net/tun is missing: userspace WireGuard cannot run",
            "load the tun module (modprobe tun) or create the device node (mknod /dev/net/tun c 10 200)",
        )
    });
    out
}
