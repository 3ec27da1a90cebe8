//! Why a net-conf.json was refused.
//!
//! Where flannel has a message for a problem, the `Display` of the variant is
//! flannel's message, byte for byte: operators search for those strings, and
//! scripts around flannel match on them. What flannel's message leaves out
//! (which family, what to write instead) lives in [`NetConfError::hint`], so
//! the first line stays flannel's and the remedy is still one call away.
//!
//! No message ever repeats the value of a pre-shared key.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::prefix::Family;

/// A net-conf.json that weft will not run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetConfError {
    /// The text is not JSON; carries serde_json's message with line and
    /// column.
    #[error("net-conf.json is not valid JSON: {0}")]
    Syntax(String),

    /// Valid JSON, but a number too large for any number type (`1e400`);
    /// no field could take it. Carries the position.
    #[error("net-conf.json has a number out of range {0}: no field takes a number that large")]
    NumberOutOfRange(String),

    /// The document is JSON but not an object (`[]`, `"…"`, `null`, …).
    #[error("net-conf.json must be a JSON object, found {0}")]
    NotAnObject(String),

    /// A field holds the wrong JSON type, a number out of range, or a string
    /// that does not parse. `field` is the canonical name (`SubnetLen`,
    /// `Backend.VNI`), whatever case the file used.
    #[error("{field} must be {expected}, found {found}")]
    InvalidValue {
        field: String,
        expected: String,
        found: String,
    },

    /// `Network` / `IPv6Network` is a string but not a prefix of the right
    /// family. Flannel says "invalid IPv4 CIDR format"; weft adds what was
    /// wrong.
    #[error("invalid {family} CIDR format in {field}: {detail}")]
    InvalidCidr {
        field: &'static str,
        family: Family,
        detail: String,
    },

    /// Both families switched off. Flannel refuses this too ("none defined
    /// stack"); weft says how to fix it.
    #[error("no address family is enabled: set EnableIPv4 or EnableIPv6 (or both) to true")]
    NoFamilyEnabled,

    /// The family is enabled but its network is missing.
    #[error("{}", missing_network(*.family))]
    MissingNetwork { family: Family },

    /// An explicit SubnetLen leaves fewer than four addresses per node.
    #[error("SubnetLen must be less than /{}", family.bits() - 1)]
    SubnetLenTooLong { family: Family, subnet_len: u64 },

    /// An explicit SubnetLen cuts the network into fewer than four subnets
    /// (the first one is never handed out).
    #[error("network must be able to accommodate at least four subnets")]
    TooFewSubnets {
        family: Family,
        network: IpNet,
        subnet_len: u64,
    },

    /// No SubnetLen given and the network is too small to split in four.
    #[error("{}", network_too_small(*.family))]
    NetworkTooSmall { family: Family, network: IpNet },

    /// An explicit SubnetMin outside the network.
    #[error("{}SubnetMin is not in the range of the {}", v6_prefix(*.family), network_field(*.family))]
    SubnetMinOutOfRange {
        family: Family,
        addr: IpAddr,
        network: IpNet,
    },

    /// An explicit SubnetMax outside the network.
    #[error("{}SubnetMax is not in the range of the {}", v6_prefix(*.family), network_field(*.family))]
    SubnetMaxOutOfRange {
        family: Family,
        addr: IpAddr,
        network: IpNet,
    },

    /// SubnetMin is not the first address of a SubnetLen block.
    #[error("{}SubnetMin is not on a SubnetLen boundary: {addr}", v6_prefix(*.family))]
    SubnetMinUnaligned {
        family: Family,
        addr: IpAddr,
        subnet_len: u8,
    },

    /// SubnetMax is not the first address of a SubnetLen block.
    #[error("{}SubnetMax is not on a SubnetLen boundary: {addr}", v6_prefix(*.family))]
    SubnetMaxUnaligned {
        family: Family,
        addr: IpAddr,
        subnet_len: u8,
    },

    /// weft only: SubnetMin above SubnetMax leaves nothing to lease; flannel
    /// accepts it and then fails every lease request.
    #[error("{}SubnetMin {min} is greater than {}SubnetMax {max}", v6_prefix(*.family), v6_prefix(*.family))]
    SubnetMinAboveMax {
        family: Family,
        min: IpAddr,
        max: IpAddr,
    },

    /// `Backend` is present but is not an object.
    #[error(
        "error decoding Backend property of config: Backend must be an object such as {{\"Type\": \"vxlan\"}}, found {found}"
    )]
    BackendNotObject { found: String },

    /// `Backend` is an object without a `Type` (or with an empty one).
    #[error(
        "Backend has no Type: set \"Type\" to one of {}",
        crate::netconf::backend::SUPPORTED_TYPES
    )]
    MissingBackendType,

    /// A backend flannel has but weft refuses on purpose.
    #[error("backend type {name:?} is not supported by weft: {reason}")]
    RefusedBackend { name: String, reason: &'static str },

    /// A backend type nobody knows. A plain, short name prints as flannel
    /// prints it; anything else (control characters, quotes, more than 64
    /// characters) is quoted, escaped and cut, so the file cannot write to
    /// the operator's terminal or forge log lines.
    #[error(
        "unknown backend type: {} (supported: {})",
        shown_type(name),
        crate::netconf::backend::SUPPORTED_TYPES
    )]
    UnknownBackendType { name: String },

    /// WireGuard `Mode` is not one of the four modes.
    #[error(
        "no valid Mode configured: {found} (Backend.Mode must be one of separate, auto, ipv4, ipv6)"
    )]
    InvalidWireguardMode { found: String },

    /// WireGuard `PSK` does not decode to a 32-byte key. The key itself is
    /// never shown.
    #[error(
        "Backend.PSK is not a valid WireGuard pre-shared key: it must be 44 characters of base64 encoding 32 bytes, as `wg genpsk` prints"
    )]
    InvalidWireguardPsk,

    /// IPsec `PSK` missing or shorter than 96 characters (flannel's message).
    #[error("config error, password is too short")]
    IpsecPskTooShort { len: usize },

    /// A backend that cannot carry a family the config enables.
    #[error(
        "the {backend} backend carries IPv4 only: set EnableIPv6 to false, or use vxlan, wireguard or host-gw for IPv6"
    )]
    Ipv4OnlyBackend { backend: &'static str },

    /// `MTU` outside what the backend's device can use.
    #[error("Backend.MTU {mtu} is out of range for the {backend} backend: it must be 0 (take the underlay interface's MTU) or from {} to 65535", floor + overhead)]
    MtuOutOfRange {
        backend: &'static str,
        mtu: i128,
        /// Bytes the backend's encapsulation takes.
        overhead: u32,
        /// Smallest MTU the device must keep: 576 (IPv4) or 1280 (IPv6).
        floor: u32,
    },

    /// WireGuard in `separate` mode with both families on one port.
    #[error(
        "Backend.ListenPort and Backend.ListenPortV6 are both {port}: in separate mode the IPv4 and IPv6 WireGuard devices need different ports"
    )]
    ListenPortConflict { port: u16 },
}

/// A backend `Type` for a message: as written when that is safe to show
/// (flannel's message, byte for byte), else as `json_ci::quoted` shows it.
fn shown_type(name: &str) -> String {
    let quoted = crate::netconf::json_ci::quoted(name);
    if quoted == format!("\"{name}\"") {
        name.to_owned()
    } else {
        quoted
    }
}

fn v6_prefix(family: Family) -> &'static str {
    match family {
        Family::V4 => "",
        Family::V6 => "IPv6",
    }
}

fn network_field(family: Family) -> &'static str {
    match family {
        Family::V4 => "Network",
        Family::V6 => "IPv6Network",
    }
}

fn missing_network(family: Family) -> String {
    format!(
        "please define a correct {} parameter in the flannel config",
        network_field(family)
    )
}

fn network_too_small(family: Family) -> &'static str {
    match family {
        Family::V4 => "network is too small. Minimum useful network prefix is /28",
        Family::V6 => "IPv6Network is too small. Minimum useful network prefix is /124",
    }
}

impl NetConfError {
    /// How to fix the problem, for a second line under flannel's message.
    /// `None` when the message already says it.
    pub fn hint(&self) -> Option<String> {
        use NetConfError as E;
        Some(match self {
            E::MissingNetwork { family: Family::V4 } => "add \"Network\": \"10.244.0.0/16\" (the cluster's IPv4 pod network), or set \"EnableIPv4\": false for an IPv6-only cluster".into(),
            E::MissingNetwork { family: Family::V6 } => "add \"IPv6Network\": \"fd00:10:244::/56\" (the cluster's IPv6 pod network), or set \"EnableIPv6\": false".into(),
            E::SubnetLenTooLong { family, subnet_len } => {
                let max = family.bits() - 2;
                let usual = if *family == Family::V4 { 24 } else { 64 };
                format!("{}SubnetLen {subnet_len} leaves no room for pods: use {max} or less ({usual} is usual)", v6_prefix(*family))
            }
            E::TooFewSubnets { family, network, subnet_len } => {
                let need = u64::from(network.prefix_len()) + 2;
                let field = format!("{}SubnetLen", v6_prefix(*family));
                if need <= u64::from(family.bits() - 2) {
                    format!("{field} {subnet_len} cuts {} {network} into fewer than four subnets: use {need} or more, or a larger network", network_field(*family))
                } else {
                    format!("{} {network} is too small to cut into four subnets: use a larger network", network_field(*family))
                }
            }
            E::NetworkTooSmall { family, network } => format!(
                "{} {network} is too small: use a /{} or larger network (a shorter prefix)",
                network_field(*family),
                family.bits() - 4
            ),
            E::SubnetMinOutOfRange { family, addr, network } => format!("{}SubnetMin {addr} is outside {} {network}", v6_prefix(*family), network_field(*family)),
            E::SubnetMaxOutOfRange { family, addr, network } => format!("{}SubnetMax {addr} is outside {} {network}", v6_prefix(*family), network_field(*family)),
            E::SubnetMinUnaligned { family, addr, subnet_len } => unaligned_hint("SubnetMin", *family, *addr, *subnet_len),
            E::SubnetMaxUnaligned { family, addr, subnet_len } => unaligned_hint("SubnetMax", *family, *addr, *subnet_len),
            E::IpsecPskTooShort { len } => format!("Backend.PSK must be at least 96 characters long (it has {len}); generate one with `openssl rand -hex 64`"),
            E::InvalidWireguardPsk => "generate one with `wg genpsk`".into(),
            E::MtuOutOfRange { backend, overhead, floor, .. } => format!(
                "the {backend} device gets Backend.MTU minus {overhead} bytes of encapsulation, and that must stay at least {floor}, {}",
                if *floor >= 1280 { "IPv6's minimum link MTU" } else { "IPv4's minimum datagram size" }
            ),
            _ => return None,
        })
    }
}

fn unaligned_hint(field: &str, family: Family, addr: IpAddr, len: u8) -> String {
    let down = IpNet::new(addr, len)
        .map(|n| n.trunc().addr())
        .unwrap_or(addr);
    format!(
        "{}{field} must be the first address of a /{len} block, such as {down}",
        v6_prefix(family)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(name: &str) -> String {
        NetConfError::UnknownBackendType { name: name.into() }.to_string()
    }

    #[test]
    fn unknown_type_prints_a_plain_name_as_flannel_does() {
        assert!(
            unknown("geneve").starts_with("unknown backend type: geneve (supported: "),
            "{}",
            unknown("geneve")
        );
        assert!(unknown("vxłan").starts_with("unknown backend type: vxłan ("));
    }

    #[test]
    fn unknown_type_quotes_escapes_and_cuts_anything_else() {
        let nul = unknown("vxlan\0");
        assert!(
            nul.starts_with(r#"unknown backend type: "vxlan\0" ("#),
            "{nul}"
        );
        let forged = unknown("vxlan\nlevel=info msg=\"ok\"");
        assert!(!forged.contains('\n'), "{forged}");
        assert!(
            forged.contains(r#""vxlan\nlevel=info msg=\"ok\"""#),
            "{forged}"
        );
        let esc = unknown("\u{1b}[2Jvxlan");
        assert!(!esc.chars().any(char::is_control), "{esc}");
        let long = unknown(&"v".repeat(10_000));
        assert!(long.chars().count() < 200, "{long}");
        assert!(long.contains("…"), "{long}");
    }
}
