//! The ipsec backend's needs: kernel ESP (probed with a throw-away SA in a
//! throwaway namespace, as weftd probes before it leases) and strongSwan's
//! charon where flannel looks for it.

use weft_dataplane::ipsec::charon::{CHARON_CANDIDATES, find_charon};
use weft_dataplane::netlink::xfrm::Xfrm;

use super::Finding;

fn probe_esp() -> Result<bool, String> {
    weft_dataplane::netns::with_runtime(&weft_dataplane::netns::Netns::Fresh, || async {
        Xfrm::open()
            .and_then(|x| x.esp_supported())
            .map_err(|e| e.to_string())
    })
    .map_err(|e| format!("cannot probe in a throwaway namespace: {e}"))?
}

pub fn findings() -> Vec<Finding> {
    let esp = match probe_esp() {
        Ok(true) => Finding::ok("kernel ESP", "the kernel can hold ESP SAs (esp4)"),
        Ok(false) => Finding::fail(
            "kernel ESP",
            "no ESP in this kernel (esp4 neither built in nor loadable): the ipsec backend cannot run here",
            "load the esp4 module (modprobe esp4), or use the wireguard backend (it has a userspace fallback)",
        ),
        Err(e) => Finding::warn(
            "kernel ESP",
            format!("probe failed: {e}"),
            "run weft check as root",
        ),
    };
    let charon = match find_charon() {
        Ok(path) => Finding::ok(
            "charon",
            format!("strongSwan's charon is at {}", path.display()),
        ),
        Err(_) => Finding::fail(
            "charon",
            format!(
                "strongSwan's charon is not installed (looked for {})",
                CHARON_CANDIDATES.join(", ")
            ),
            "install strongSwan (Debian: strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins), or run weft's image, which carries it",
        ),
    };
    vec![esp, charon]
}
