//! What the fuzz targets share: the configurations peers are screened
//! against (those of the hostile lease corpus,
//! `crates/weft-core/tests/fixtures/hostile/`) and the properties every
//! accepted peer must have. A violated property is a crash, as a panic is:
//! a peer accepted with an unusable address would be programmed into the
//! kernel, which is exactly what screening exists to prevent.

use std::sync::OnceLock;

use weft_core::etcd_key;
use weft_core::lease::{Lease, LeaseSubnets};
use weft_core::netconf::{self, NetConfig};
use weft_core::peer::{self, PeerRejection, ScreenedPeers};

/// The properties of an accepted lease, shared with the hostile-corpus
/// test so that fuzzer and test judge the same way.
#[path = "../../crates/weft-core/tests/fixtures/hostile/accepted.rs"]
mod accepted;
pub use accepted::assert_valid;

/// A config peers are screened against, our own subnets, and an older,
/// good peer whose subnet a hostile entry may try to take.
pub struct Setting {
    pub cfg: NetConfig,
    pub own: LeaseSubnets,
    pub good: (String, Lease),
}

const GOOD_VXLAN: &str = r#"{"PublicIP":"198.51.100.2","PublicIPv6":"2001:db8::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:42:c6:33:64:02"},"BackendV6Data":{"VNI":1,"VtepMAC":"02:42:c6:33:65:02"}}"#;
const GOOD_WG: &str = r#"{"PublicIP":"198.51.100.2","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","Port":51820}}"#;

/// vxlan IPv4, vxlan dual-stack, wireguard IPv4, host-gw IPv4.
pub fn settings() -> &'static [Setting] {
    static S: OnceLock<Vec<Setting>> = OnceLock::new();
    S.get_or_init(|| {
        let n = r#""Network":"10.244.0.0/16""#;
        let v6 = r#","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56""#;
        [
            (
                format!(r#"{{{n},"Backend":{{"Type":"vxlan"}}}}"#),
                false,
                GOOD_VXLAN,
            ),
            (
                format!(r#"{{{n}{v6},"Backend":{{"Type":"vxlan"}}}}"#),
                true,
                GOOD_VXLAN,
            ),
            (
                format!(r#"{{{n},"Backend":{{"Type":"wireguard"}}}}"#),
                false,
                GOOD_WG,
            ),
            (
                format!(r#"{{{n},"Backend":{{"Type":"host-gw"}}}}"#),
                false,
                r#"{"PublicIP":"198.51.100.2","BackendType":"host-gw"}"#,
            ),
        ]
        .into_iter()
        .map(|(json, dual, good)| {
            let (own, good_key) = if dual {
                (
                    "10.244.1.0-24&fd00:10:244:1::-64",
                    "10.244.2.0-24&fd00:10:244:2::-64",
                )
            } else {
                ("10.244.1.0-24", "10.244.2.0-24")
            };
            let good = decode(good_key, good.as_bytes()).expect("the good peer decodes");
            Setting {
                cfg: netconf::parse(&json).expect("the config parses"),
                own: etcd_key::parse_subnet_key(own).expect("own key"),
                good: ("good".to_owned(), good),
            }
        })
        .collect()
    })
}

/// A stored entry decoded as the store decodes it
/// (`weft-store/src/peer_watch.rs`).
pub fn decode(key: &str, value: &[u8]) -> Result<Lease, PeerRejection> {
    Ok(Lease {
        subnets: etcd_key::parse_subnet_key(key)?,
        attrs: weft_core::lease::LeaseAttrs::from_json(value)?,
        expiration: None,
    })
}

/// Screens `candidate` after the good peer in every setting and checks
/// every accepted lease.
pub fn screen_everywhere(candidate: &Result<Lease, PeerRejection>) {
    for s in settings() {
        let screened = peer::screen(
            &s.cfg,
            &s.own,
            [
                (s.good.0.clone(), Ok(s.good.1.clone())),
                ("fuzzed".to_owned(), candidate.clone()),
            ],
        );
        check(s, &screened);
    }
}

/// The properties of a screening outcome.
pub fn check(s: &Setting, screened: &ScreenedPeers) {
    assert!(
        screened.accepted.iter().any(|(id, _)| id == "good"),
        "a later entry displaced the good peer: {screened:?}"
    );
    for r in &screened.rejected {
        // The reason is shown and counted: it must format.
        let _ = (r.to_string(), r.reason.kind());
    }
    for (_, lease) in &screened.accepted {
        assert_valid(&s.cfg, &s.own, lease);
    }
}
