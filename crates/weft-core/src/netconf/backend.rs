//! The `Backend` section of net-conf.json: which data plane carries pod
//! traffic between nodes, and its options with every default filled in.
//!
//! Reading the section lives in `backend_parse.rs`; this file holds the
//! types the rest of weft uses, and how they are written back out.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::prefix::Family;
use crate::wg_key::WgKey;

/// The backend types weft runs, as listed in error messages.
pub(crate) const SUPPORTED_TYPES: &str = "vxlan, host-gw, wireguard, ipip, ipsec, none";

/// Written in place of a pre-shared key whenever a config is shown.
pub const REDACTED: &str = "<redacted>";

/// The backend and its options, defaults resolved.
///
/// A missing (or `null`) `Backend` means vxlan. flannel's code says udp
/// there while its documentation says vxlan; weft follows the documentation,
/// because udp is a debug-only backend that weft refuses anyway and vxlan is
/// what every shipped manifest asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// VXLAN overlay (`flannel.<VNI>` devices). Also the default.
    Vxlan(VxlanOptions),
    /// Plain routes via each peer's public IP; needs layer-2 adjacency.
    HostGw,
    /// WireGuard tunnels (`flannel-wg`, `flannel-wg-v6`). K3s calls it
    /// `wireguard-native`; both names are accepted.
    Wireguard(WireguardOptions),
    /// IP-in-IP tunnel (`flannel.ipip`), IPv4 only.
    Ipip(IpipOptions),
    /// IPsec via strongSwan, IPv4 only.
    Ipsec(IpsecOptions),
    /// Lease a subnet and program nothing (flannel's `alloc`): for clusters
    /// whose routing is done by something else.
    None,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::Vxlan(VxlanOptions::default())
    }
}

impl BackendConfig {
    /// The `BackendType` this node publishes in its lease; peers ignore
    /// leases of other types. `none` publishes an empty string, exactly as
    /// flannel's `alloc` backend does, so mixed clusters agree.
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::None => "",
            other => other.config_type(),
        }
    }

    /// The canonical `Type` to write in a net-conf.json (`none` rather than
    /// the empty lease type, `wireguard` rather than `wireguard-native`).
    pub fn config_type(&self) -> &'static str {
        match self {
            BackendConfig::Vxlan(_) => "vxlan",
            BackendConfig::HostGw => "host-gw",
            BackendConfig::Wireguard(_) => "wireguard",
            BackendConfig::Ipip(_) => "ipip",
            BackendConfig::Ipsec(_) => "ipsec",
            BackendConfig::None => "none",
        }
    }

    /// Whether the backend can carry pod traffic of `family`. ipip and
    /// ipsec are IPv4-only in flannel and in weft.
    pub fn supports(&self, family: Family) -> bool {
        match self {
            BackendConfig::Ipip(_) | BackendConfig::Ipsec(_) => family == Family::V4,
            _ => true,
        }
    }

    /// Bytes flannel subtracts from the underlay MTU for the pod MTU
    /// (`FLANNEL_MTU`): vxlan 50, wireguard 80, ipip 20, ipsec 77 (85 with
    /// UDP encapsulation), none for plain routing.
    pub fn encap_overhead(&self) -> u32 {
        match self {
            BackendConfig::Vxlan(_) => 50,
            BackendConfig::Wireguard(_) => 80,
            BackendConfig::Ipip(_) => 20,
            BackendConfig::Ipsec(o) if o.udp_encap => 85,
            BackendConfig::Ipsec(_) => 77,
            BackendConfig::HostGw | BackendConfig::None => 0,
        }
    }
}

/// vxlan options (flannel's names, matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanOptions {
    /// VXLAN network identifier, 0..=16777215; names the device
    /// `flannel.<VNI>`. Default 1.
    pub vni: u32,
    /// UDP port. The file's 0 (the default) means the kernel's default,
    /// 8472, and is stored resolved so the data plane never guesses.
    pub port: u16,
    /// Underlay MTU to derive the device MTU from; `None` (the file's 0):
    /// take the external interface's MTU.
    pub mtu: Option<u32>,
    /// VXLAN Group Based Policy extension.
    pub gbp: bool,
    /// Kernel FDB learning on the device.
    pub learning: bool,
    /// Route straight to peers on the same layer-2 segment instead of
    /// encapsulating.
    pub direct_routing: bool,
    /// weft's own option (flannel ignores the key): TX checksum offload on
    /// the vxlan device. `None` (absent or null, the default): chosen per
    /// node at start by [`crate::offload_policy::decide`], on unless the
    /// kernel or the underlay's driver is known to corrupt checksums with it
    /// (flannel #1279: "UDP: bad checksum"); off costs most of the vxlan
    /// throughput. `Some` forces it either way.
    pub tx_checksum_offload: Option<bool>,
}

/// The kernel's VXLAN port when none is given (Linux's historic default,
/// not IANA's 4789).
pub const VXLAN_DEFAULT_PORT: u16 = 8472;

impl Default for VxlanOptions {
    fn default() -> Self {
        VxlanOptions {
            vni: 1,
            port: VXLAN_DEFAULT_PORT,
            mtu: None,
            gbp: false,
            learning: false,
            direct_routing: false,
            tx_checksum_offload: None,
        }
    }
}

/// How the WireGuard backend lays out its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireguardMode {
    /// One device per family (`flannel-wg`, `flannel-wg-v6`), each with its
    /// own port. flannel's default.
    #[default]
    Separate,
    /// One device for both families; endpoint family chosen per peer.
    Auto,
    /// One device for both families; endpoints over IPv4.
    Ipv4,
    /// One device for both families; endpoints over IPv6.
    Ipv6,
}

impl WireguardMode {
    /// The value as written in net-conf.json.
    pub fn as_str(self) -> &'static str {
        match self {
            WireguardMode::Separate => "separate",
            WireguardMode::Auto => "auto",
            WireguardMode::Ipv4 => "ipv4",
            WireguardMode::Ipv6 => "ipv6",
        }
    }
}

/// wireguard options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardOptions {
    /// UDP port of the IPv4 (or the single) device. Default 51820.
    pub listen_port: u16,
    /// UDP port of the IPv6 device in `separate` mode. Default 51821.
    pub listen_port_v6: u16,
    /// Underlay MTU; `None`: the external interface's.
    pub mtu: Option<u32>,
    /// Optional pre-shared key mixed into every peer's handshake.
    pub psk: Option<WireguardPsk>,
    /// Seconds between keepalives, 0 = off.
    pub persistent_keepalive_interval: u16,
    /// One device per family, or one for both.
    pub mode: WireguardMode,
}

impl Default for WireguardOptions {
    fn default() -> Self {
        WireguardOptions {
            listen_port: 51820,
            listen_port_v6: 51821,
            mtu: None,
            psk: None,
            persistent_keepalive_interval: 0,
            mode: WireguardMode::Separate,
        }
    }
}

/// A WireGuard pre-shared key. Its `Debug` never shows the key, so it can
/// sit in a logged config.
#[derive(Clone, PartialEq, Eq)]
pub struct WireguardPsk(WgKey);

impl WireguardPsk {
    pub(crate) fn new(key: WgKey) -> Self {
        WireguardPsk(key)
    }

    /// The 32 key bytes, for the data plane.
    pub fn key(&self) -> &WgKey {
        &self.0
    }
}

impl fmt::Debug for WireguardPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireguardPsk({REDACTED})")
    }
}

/// ipip options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpipOptions {
    /// Route straight to on-link peers without the tunnel.
    pub direct_routing: bool,
}

/// ipsec options. No `Default`: the PSK has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecOptions {
    /// IKE pre-shared key, at least 96 characters.
    pub psk: IpsecPsk,
    /// Encapsulate ESP in UDP (for NAT).
    pub udp_encap: bool,
    /// strongSwan ESP proposal.
    pub esp_proposal: String,
}

/// flannel's default ESP proposal.
pub const DEFAULT_ESP_PROPOSAL: &str = "aes128gcm16-sha256-prfsha256-ecp256";

/// An IPsec pre-shared key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct IpsecPsk(String);

impl IpsecPsk {
    pub(crate) fn new(psk: String) -> Self {
        IpsecPsk(psk)
    }

    /// The key, for handing to strongSwan and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IpsecPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpsecPsk({REDACTED})")
    }
}

/// Written in flannel's shape (`{"Type": "vxlan", "VNI": 1, …}`) with every
/// option at its effective value, so the output is itself a valid `Backend`
/// section, except that pre-shared keys read `"<redacted>"` and an unset
/// `TxChecksumOffload` reads `null` (each node chooses at start; null reads
/// back as unset).
impl Serialize for BackendConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("Type", self.config_type())?;
        match self {
            BackendConfig::Vxlan(o) => {
                m.serialize_entry("VNI", &o.vni)?;
                m.serialize_entry("Port", &o.port)?;
                m.serialize_entry("MTU", &o.mtu.unwrap_or(0))?;
                m.serialize_entry("GBP", &o.gbp)?;
                m.serialize_entry("Learning", &o.learning)?;
                m.serialize_entry("DirectRouting", &o.direct_routing)?;
                m.serialize_entry("TxChecksumOffload", &o.tx_checksum_offload)?;
            }
            BackendConfig::Wireguard(o) => {
                m.serialize_entry("ListenPort", &o.listen_port)?;
                m.serialize_entry("ListenPortV6", &o.listen_port_v6)?;
                m.serialize_entry("MTU", &o.mtu.unwrap_or(0))?;
                m.serialize_entry("PSK", &o.psk.as_ref().map(|_| REDACTED))?;
                m.serialize_entry(
                    "PersistentKeepaliveInterval",
                    &o.persistent_keepalive_interval,
                )?;
                m.serialize_entry("Mode", o.mode.as_str())?;
            }
            BackendConfig::Ipip(o) => {
                m.serialize_entry("DirectRouting", &o.direct_routing)?;
            }
            BackendConfig::Ipsec(o) => {
                m.serialize_entry("PSK", REDACTED)?;
                m.serialize_entry("UDPEncap", &o.udp_encap)?;
                m.serialize_entry("ESPProposal", &o.esp_proposal)?;
            }
            BackendConfig::HostGw | BackendConfig::None => {}
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(BackendConfig::default().type_name(), "vxlan");
        assert_eq!(BackendConfig::HostGw.type_name(), "host-gw");
        assert_eq!(BackendConfig::None.type_name(), "");
        assert_eq!(BackendConfig::None.config_type(), "none");
        let wg = BackendConfig::Wireguard(WireguardOptions::default());
        assert_eq!(wg.type_name(), "wireguard");
        assert_eq!(
            BackendConfig::Ipip(IpipOptions::default()).type_name(),
            "ipip"
        );
    }

    #[test]
    fn secrets_never_show() {
        let key = WgKey([7; 32]);
        let wg = BackendConfig::Wireguard(WireguardOptions {
            psk: Some(WireguardPsk::new(key)),
            ..WireguardOptions::default()
        });
        let ipsec = BackendConfig::Ipsec(IpsecOptions {
            psk: IpsecPsk::new("s3cr3t".repeat(20)),
            udp_encap: false,
            esp_proposal: DEFAULT_ESP_PROPOSAL.into(),
        });
        for b in [wg, ipsec] {
            for text in [format!("{b:?}"), serde_json::to_string(&b).unwrap()] {
                assert!(!text.contains(&key.to_base64()), "{text}");
                assert!(!text.contains("s3cr3t"), "{text}");
                assert!(text.contains(REDACTED), "{text}");
            }
        }
    }
}
