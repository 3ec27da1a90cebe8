//! Reading the `Backend` section: the type, then that backend's options,
//! keys matched case-insensitively as flannel's per-backend
//! `json.Unmarshal` does.
//!
//! Beyond flannel's own checks, weft checks what a node agent needs before
//! it touches the kernel: numbers in range (a VNI of 2^24 or a port of
//! 70000 is refused here, not by netlink later), an MTU that leaves the pod
//! network usable, and backends asked to carry a family they cannot.

use serde_json::value::RawValue;

use super::NetConfError;
use super::backend::{
    BackendConfig, DEFAULT_ESP_PROPOSAL, IpipOptions, IpsecOptions, IpsecPsk, VxlanOptions,
    WireguardMode, WireguardOptions, WireguardPsk,
};
use super::json_ci::{self, CiObject, bool_of, int_in, string_of};
use crate::wg_key::WgKey;

/// Which families the config enables; some options depend on them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Families {
    pub ipv4: bool,
    pub ipv6: bool,
}

/// Backends flannel has and weft refuses, with the reason given to the
/// operator.
const REFUSED: &[(&str, &str)] = &[
    (
        "udp",
        "udp is flannel's debug-only userspace backend (amd64 only, slow, superseded by vxlan); use \"vxlan\"",
    ),
    (
        "extension",
        "the extension backend runs arbitrary commands taken from the network configuration, so whoever can write the config can run code as root on every node (remote code execution); weft does not implement it: use vxlan, wireguard or host-gw",
    ),
    (
        "tencent-vpc",
        "cloud route-table backends are not implemented by weft; use vxlan or host-gw",
    ),
    (
        "aws-vpc",
        "flannel removed its cloud backends (aws-vpc, gce, ali-vpc) in 2022; use vxlan or host-gw",
    ),
    (
        "gce",
        "flannel removed its cloud backends (aws-vpc, gce, ali-vpc) in 2022; use vxlan or host-gw",
    ),
    (
        "ali-vpc",
        "flannel removed its cloud backends (aws-vpc, gce, ali-vpc) in 2022; use vxlan or host-gw",
    ),
];

/// Checks that `Backend`, when present and not `null`, is an object. Done
/// while parsing the top level, as flannel does ("error decoding Backend
/// property of config").
pub(crate) fn object(raw: Option<&RawValue>) -> Result<Option<CiObject<'_>>, NetConfError> {
    match raw {
        None => Ok(None),
        Some(raw) => {
            CiObject::parse_member(raw)
                .map(Some)
                .map_err(|value| NetConfError::BackendNotObject {
                    found: json_ci::describe(&value, false),
                })
        }
    }
}

/// The backend and its options. `unknown` receives option keys that mean
/// nothing to the chosen backend, as `Backend.<key>`.
pub(crate) fn parse(
    obj: Option<&CiObject>,
    families: Families,
    unknown: &mut Vec<String>,
) -> Result<BackendConfig, NetConfError> {
    let Some(obj) = obj else {
        return Ok(BackendConfig::default());
    };
    let ty = obj
        .read("Type", |r| {
            string_of("Backend.Type", "a string such as \"vxlan\"", r, false)
        })?
        .unwrap_or_default();
    if ty.is_empty() {
        return Err(NetConfError::MissingBackendType);
    }
    // Go: strings.ToLower(config.BackendType).
    let lower = ty.to_lowercase();
    if let Some((_, reason)) = REFUSED.iter().find(|(name, _)| *name == lower) {
        return Err(NetConfError::RefusedBackend { name: ty, reason });
    }
    let (backend, known): (BackendConfig, &[&str]) = match lower.as_str() {
        "vxlan" => (BackendConfig::Vxlan(vxlan(obj, families)?), VXLAN_KEYS),
        "host-gw" => (BackendConfig::HostGw, &[]),
        "wireguard" | "wireguard-native" => (
            BackendConfig::Wireguard(wireguard(obj, families)?),
            WIREGUARD_KEYS,
        ),
        "ipip" => (BackendConfig::Ipip(ipip(obj)?), IPIP_KEYS),
        "ipsec" => (BackendConfig::Ipsec(ipsec(obj)?), IPSEC_KEYS),
        "none" | "alloc" => (BackendConfig::None, &[]),
        _ => return Err(NetConfError::UnknownBackendType { name: ty }),
    };
    if families.ipv6 && !backend.supports(crate::prefix::Family::V6) {
        return Err(NetConfError::Ipv4OnlyBackend {
            backend: backend.config_type(),
        });
    }
    let mut keys = vec!["Type"];
    keys.extend_from_slice(known);
    unknown.extend(
        obj.unknown_keys(&keys)
            .into_iter()
            .map(|k| format!("Backend.{k}")),
    );
    Ok(backend)
}

const VXLAN_KEYS: &[&str] = &[
    "VNI",
    "Port",
    "MTU",
    "GBP",
    "Learning",
    "DirectRouting",
    "TxChecksumOffload",
];
const WIREGUARD_KEYS: &[&str] = &[
    "ListenPort",
    "ListenPortV6",
    "MTU",
    "PSK",
    "PersistentKeepaliveInterval",
    "Mode",
];
const IPIP_KEYS: &[&str] = &["DirectRouting"];
const IPSEC_KEYS: &[&str] = &["PSK", "UDPEncap", "ESPProposal"];

/// A boolean option, `default` when absent.
fn flag(obj: &CiObject, name: &str, default: bool) -> Result<bool, NetConfError> {
    let field = format!("Backend.{name}");
    Ok(obj.read(name, |r| bool_of(&field, r))?.unwrap_or(default))
}

/// A boolean option that has no fixed default: `None` when absent or null.
fn optional_flag(obj: &CiObject, name: &str) -> Result<Option<bool>, NetConfError> {
    let field = format!("Backend.{name}");
    obj.read(name, |r| bool_of(&field, r))
}

/// An integer option in `min..=max`, `default` when absent.
fn number(
    obj: &CiObject,
    name: &str,
    min: i128,
    max: i128,
    default: i128,
) -> Result<i128, NetConfError> {
    let field = format!("Backend.{name}");
    Ok(obj
        .read(name, |r| int_in(&field, min, max, r))?
        .unwrap_or(default))
}

/// A port option in 1..=65535.
fn port(obj: &CiObject, name: &str, default: u16) -> Result<u16, NetConfError> {
    let n = number(obj, name, 1, 65535, i128::from(default))?;
    Ok(u16::try_from(n).unwrap_or(default))
}

/// `MTU`: 0 or absent means "the underlay interface's"; otherwise it must
/// leave the device (MTU minus the backend's overhead) at least the minimum
/// link MTU of every enabled family: 576 for IPv4, 1280 for IPv6.
fn mtu(
    obj: &CiObject,
    backend: &'static str,
    overhead: u32,
    families: Families,
) -> Result<Option<u32>, NetConfError> {
    let field = "Backend.MTU";
    let expected = "an integer (an MTU in bytes, or 0 for the underlay interface's)";
    let Some(mtu) = obj.read("MTU", |r| json_ci::integer_of(field, expected, r))? else {
        return Ok(None);
    };
    if mtu == 0 {
        return Ok(None);
    }
    let floor = if families.ipv6 { 1280 } else { 576 };
    match u32::try_from(mtu) {
        Ok(m) if (floor + overhead..=65535).contains(&m) => Ok(Some(m)),
        _ => Err(NetConfError::MtuOutOfRange {
            backend,
            mtu,
            overhead,
            floor,
        }),
    }
}

fn vxlan(obj: &CiObject, families: Families) -> Result<VxlanOptions, NetConfError> {
    let d = VxlanOptions::default();
    let vni = number(obj, "VNI", 0, (1 << 24) - 1, i128::from(d.vni))?;
    let port = number(obj, "Port", 0, 65535, 0)?;
    Ok(VxlanOptions {
        vni: u32::try_from(vni).unwrap_or(d.vni),
        port: match u16::try_from(port) {
            Ok(0) | Err(_) => d.port,
            Ok(p) => p,
        },
        mtu: mtu(obj, "vxlan", 50, families)?,
        gbp: flag(obj, "GBP", d.gbp)?,
        learning: flag(obj, "Learning", d.learning)?,
        direct_routing: flag(obj, "DirectRouting", d.direct_routing)?,
        tx_checksum_offload: optional_flag(obj, "TxChecksumOffload")?,
    })
}

fn wireguard(obj: &CiObject, families: Families) -> Result<WireguardOptions, NetConfError> {
    let d = WireguardOptions::default();
    let keepalive = number(obj, "PersistentKeepaliveInterval", 0, 65535, 0)?;
    let opts = WireguardOptions {
        listen_port: port(obj, "ListenPort", d.listen_port)?,
        listen_port_v6: port(obj, "ListenPortV6", d.listen_port_v6)?,
        mtu: mtu(obj, "wireguard", 80, families)?,
        psk: wireguard_psk(obj)?,
        persistent_keepalive_interval: u16::try_from(keepalive).unwrap_or(0),
        mode: wireguard_mode(obj)?,
    };
    if opts.mode == WireguardMode::Separate
        && families.ipv4
        && families.ipv6
        && opts.listen_port == opts.listen_port_v6
    {
        return Err(NetConfError::ListenPortConflict {
            port: opts.listen_port,
        });
    }
    Ok(opts)
}

/// flannel: an empty PSK means none; otherwise `wgtypes.ParseKey`, whose
/// base64 decoder skips `\r` and `\n` (a key pasted with its newline works).
/// weft refuses keys whose last character carries non-zero padding bits,
/// which `wg genpsk` never prints.
fn wireguard_psk(obj: &CiObject) -> Result<Option<WireguardPsk>, NetConfError> {
    let expected = "a string (a base64 key as `wg genpsk` prints)";
    let Some(text) = obj.read("PSK", |r| string_of("Backend.PSK", expected, r, true))? else {
        return Ok(None);
    };
    let text: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    if text.is_empty() {
        return Ok(None);
    }
    WgKey::from_base64(&text)
        .map(|k| Some(WireguardPsk::new(k)))
        .map_err(|_| NetConfError::InvalidWireguardPsk)
}

/// flannel compares the mode case-sensitively; weft also accepts `Auto`,
/// `IPv4`, … since nothing else could be meant.
fn wireguard_mode(obj: &CiObject) -> Result<WireguardMode, NetConfError> {
    let expected = "a string: separate, auto, ipv4 or ipv6";
    let Some(text) = obj.read("Mode", |r| string_of("Backend.Mode", expected, r, false))? else {
        return Ok(WireguardMode::default());
    };
    match text.to_lowercase().as_str() {
        "separate" => Ok(WireguardMode::Separate),
        "auto" => Ok(WireguardMode::Auto),
        "ipv4" => Ok(WireguardMode::Ipv4),
        "ipv6" => Ok(WireguardMode::Ipv6),
        _ => Err(NetConfError::InvalidWireguardMode {
            found: json_ci::quoted(&text),
        }),
    }
}

fn ipip(obj: &CiObject) -> Result<IpipOptions, NetConfError> {
    Ok(IpipOptions {
        direct_routing: flag(obj, "DirectRouting", false)?,
    })
}

/// The IPsec PSK is required and at least 96 bytes long (flannel counts
/// bytes). The ESP proposal reaches strongSwan over VICI; weft limits it to
/// the characters proposals are made of.
fn ipsec(obj: &CiObject) -> Result<IpsecOptions, NetConfError> {
    let expected = "a string of at least 96 characters";
    let psk = obj
        .read("PSK", |r| string_of("Backend.PSK", expected, r, true))?
        .unwrap_or_default();
    if psk.len() < 96 {
        return Err(NetConfError::IpsecPskTooShort { len: psk.len() });
    }
    let expected = format!("a strongSwan ESP proposal such as \"{DEFAULT_ESP_PROPOSAL}\"");
    let proposal = obj.read("ESPProposal", |r| {
        let s = string_of("Backend.ESPProposal", &expected, r, false)?;
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ','));
        if ok {
            Ok(s)
        } else {
            Err(json_ci::invalid("Backend.ESPProposal", &expected, r, false))
        }
    })?;
    Ok(IpsecOptions {
        psk: IpsecPsk::new(psk),
        udp_encap: flag(obj, "UDPEncap", false)?,
        esp_proposal: proposal.unwrap_or_else(|| DEFAULT_ESP_PROPOSAL.to_string()),
    })
}
