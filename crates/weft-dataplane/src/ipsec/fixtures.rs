//! The tunnel and settings the ipsec tests use: the unit tests' (`mod
//! fixtures` here) and the VICI integration test's (by `#[path]`), so that
//! both speak of the same tunnel.
#![allow(clippy::unwrap_used)]

use super::IpsecSettings;
use weft_core::plan::IpsecTunnel;

/// 10.244.1.0/24 on 192.0.2.1 to 10.244.2.0/24 on 192.0.2.2.
pub fn tunnel() -> IpsecTunnel {
    IpsecTunnel {
        peer: "10.244.2.0-24".into(),
        local_public: "192.0.2.1".parse().unwrap(),
        remote_public: "192.0.2.2".parse().unwrap(),
        local_subnet: "10.244.1.0/24".parse().unwrap(),
        remote_subnet: "10.244.2.0/24".parse().unwrap(),
    }
}

/// A 96-character PSK of `k`s, the default ESP proposal, UDP encapsulation.
pub fn settings() -> IpsecSettings {
    IpsecSettings {
        psk: "k".repeat(96),
        esp_proposal: "aes128gcm16-sha256-prfsha256-ecp256".into(),
        udp_encap: true,
    }
}
