//! Leases: which node holds which subnet, and what it tells its peers.
//!
//! The JSON form is flannel's `LeaseAttrs`, byte for byte, because flannel and
//! weft nodes read each other's leases during a node-by-node migration:
//! `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{...}}`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::netconf::json_ci::equal_fold;
use crate::prefix::Family;

/// Largest lease value weft accepts from a store. Flannel's values are about
/// 150 bytes; anything near this bound is a mistake or an attack, and
/// refusing it keeps one bad peer from costing every node memory.
pub const MAX_LEASE_VALUE_BYTES: usize = 4096;

/// The subnets a lease holds: one per enabled family. They are the lease's
/// identity (the etcd key is made from them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LeaseSubnets {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

impl LeaseSubnets {
    pub fn get(&self, family: Family) -> Option<IpNet> {
        match family {
            Family::V4 => self.v4.map(IpNet::V4),
            Family::V6 => self.v6.map(IpNet::V6),
        }
    }

    /// Both subnets, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = IpNet> {
        self.v4
            .map(IpNet::V4)
            .into_iter()
            .chain(self.v6.map(IpNet::V6))
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }
}

impl fmt::Display for LeaseSubnets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.v4, self.v6) {
            (Some(a), Some(b)) => write!(f, "{a},{b}"),
            (Some(a), None) => write!(f, "{a}"),
            (None, Some(b)) => write!(f, "{b}"),
            (None, None) => f.write_str("(no subnet)"),
        }
    }
}

/// Raw, already-valid JSON kept verbatim (flannel's `json.RawMessage`):
/// backend data is interpreted by the backend that owns it, not by the store.
/// Shared, not copied: a lease passes from the store's mirror into every
/// peer snapshot, and at thousands of peers copying each one's backend
/// data was most of what building a snapshot cost.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawJson(std::sync::Arc<str>);

impl RawJson {
    /// Serialises a value into compact JSON.
    pub fn from_value<T: Serialize>(value: &T) -> Result<RawJson, serde_json::Error> {
        serde_json::to_string(value).map(|s| RawJson(s.into()))
    }

    /// Checks that `text` is one JSON value and keeps it compacted, as Go's
    /// encoder compacts a RawMessage when it re-marshals it. Key order is
    /// kept: `{"PublicKey":..,"Port":..}` must not become `{"Port":..}`.
    pub fn parse(text: &str) -> Result<RawJson, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        Ok(RawJson(compact(raw.get()).into()))
    }

    /// JSON `null`: what flannel stores when a backend has no data.
    pub fn null() -> RawJson {
        RawJson("null".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        RawJson::parse(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// What a node publishes about itself, in flannel's field order and spelling.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LeaseAttrs {
    /// Written as `"0.0.0.0"` when absent, as flannel's `ip.IP4` zero value.
    #[serde(rename = "PublicIP", serialize_with = "public_ip_v4")]
    pub public_ip: Option<Ipv4Addr>,
    /// Written as `null` when absent.
    #[serde(rename = "PublicIPv6")]
    pub public_ipv6: Option<Ipv6Addr>,
    #[serde(rename = "BackendType", skip_serializing_if = "String::is_empty")]
    pub backend_type: String,
    #[serde(rename = "BackendData", skip_serializing_if = "Option::is_none")]
    pub backend_data: Option<RawJson>,
    #[serde(rename = "BackendV6Data", skip_serializing_if = "Option::is_none")]
    pub backend_v6_data: Option<RawJson>,
}

impl LeaseAttrs {
    /// The public address of one family, if published.
    pub fn public_addr(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.public_ip.map(IpAddr::V4),
            Family::V6 => self.public_ipv6.map(IpAddr::V6),
        }
    }

    /// The backend data of one family (`BackendData` or `BackendV6Data`).
    pub fn backend_data_for(&self, family: Family) -> Option<&RawJson> {
        match family {
            Family::V4 => self.backend_data.as_ref(),
            Family::V6 => self.backend_v6_data.as_ref(),
        }
        .filter(|d| !d.is_null())
    }

    /// The exact bytes flannel stores as the etcd value.
    pub fn to_json(&self) -> String {
        // Serialising plain strings, addresses and pre-validated raw JSON
        // cannot fail; fall back to an empty object rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Parses a stored value, refusing oversized or malformed input. Keys
    /// match case-insensitively, as Go's decoder (which wrote the value)
    /// matches them; backend data is kept verbatim.
    pub fn from_json(bytes: &[u8]) -> Result<LeaseAttrs, LeaseDecodeError> {
        if bytes.len() > MAX_LEASE_VALUE_BYTES {
            return Err(LeaseDecodeError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| LeaseDecodeError::NotUtf8)?;
        let members: HashMap<String, Box<RawValue>> =
            serde_json::from_str(text).map_err(|e| LeaseDecodeError::Json(e.to_string()))?;
        let pick = |name: &str| -> Option<&RawValue> {
            members
                .get(name)
                .or_else(|| {
                    members
                        .iter()
                        .find(|(k, _)| equal_fold(k, name))
                        .map(|(_, v)| v)
                })
                .map(|v| &**v)
                .filter(|v| v.get() != "null")
        };
        let string = |name: &str| -> Result<Option<String>, LeaseDecodeError> {
            pick(name)
                .map(|raw| {
                    serde_json::from_str::<String>(raw.get())
                        .map_err(|_| LeaseDecodeError::Json(format!("{name} must be a string")))
                })
                .transpose()
        };
        let public_ip = match string("PublicIP")? {
            None => None,
            Some(t) => {
                let ip: Ipv4Addr = t.parse().map_err(|_| {
                    LeaseDecodeError::Json(format!("PublicIP {t:?} is not an IPv4 address"))
                })?;
                (!ip.is_unspecified()).then_some(ip)
            }
        };
        let public_ipv6 = match string("PublicIPv6")? {
            None => None,
            Some(t) => Some(t.parse::<Ipv6Addr>().map_err(|_| {
                LeaseDecodeError::Json(format!("PublicIPv6 {t:?} is not an IPv6 address"))
            })?),
        };
        let raw = |name: &str| {
            pick(name)
                .map(|r| RawJson::parse(r.get()).map_err(|e| LeaseDecodeError::Json(e.to_string())))
                .transpose()
        };
        Ok(LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_type: string("BackendType")?.unwrap_or_default(),
            backend_data: raw("BackendData")?,
            backend_v6_data: raw("BackendV6Data")?,
        })
    }
}

/// Why a stored lease value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseDecodeError {
    #[error("lease value is {0} bytes, more than the {MAX_LEASE_VALUE_BYTES} allowed")]
    TooLarge(usize),
    #[error("lease value is not valid UTF-8")]
    NotUtf8,
    #[error("lease value is not valid lease JSON: {0}")]
    Json(String),
}

/// A lease as a store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub subnets: LeaseSubnets,
    pub attrs: LeaseAttrs,
    /// When the lease lapses unless renewed; `None` for a reservation (a key
    /// written without TTL), which never expires.
    pub expiration: Option<SystemTime>,
}

/// Drops the whitespace between tokens of valid JSON, leaving strings alone.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

fn public_ip_v4<S: Serializer>(ip: &Option<Ipv4Addr>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&ip.unwrap_or(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VXLAN: &str = r#"{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"2e:1d:8b:97:dc:f0"}}"#;

    #[test]
    fn vxlan_value_round_trips_byte_for_byte() {
        let attrs = LeaseAttrs::from_json(VXLAN.as_bytes()).unwrap();
        assert_eq!(attrs.public_ip, Some(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(attrs.to_json(), VXLAN);
    }

    /// flannel's dual-stack value: Go's field order, the IPv6 address as a
    /// string, the v6 device's data last.
    #[test]
    fn dual_stack_value_round_trips_byte_for_byte() {
        const DUAL: &str = r#"{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"2e:1d:8b:97:dc:f0"},"BackendV6Data":{"VNI":1,"VtepMAC":"2e:1d:8b:97:dc:f1"}}"#;
        let attrs = LeaseAttrs::from_json(DUAL.as_bytes()).unwrap();
        assert_eq!(attrs.public_ipv6, Some("2001:db8::2".parse().unwrap()));
        assert!(attrs.backend_v6_data.is_some());
        assert_eq!(attrs.to_json(), DUAL);
    }

    #[test]
    fn host_gw_has_no_backend_data() {
        let attrs = LeaseAttrs {
            public_ip: Some(Ipv4Addr::new(192, 0, 2, 1)),
            backend_type: "host-gw".into(),
            ..Default::default()
        };
        assert_eq!(
            attrs.to_json(),
            r#"{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"host-gw"}"#
        );
    }

    #[test]
    fn absent_public_ip_is_written_as_zero() {
        let attrs = LeaseAttrs::default();
        assert_eq!(
            attrs.to_json(),
            r#"{"PublicIP":"0.0.0.0","PublicIPv6":null}"#
        );
        let back = LeaseAttrs::from_json(attrs.to_json().as_bytes()).unwrap();
        assert_eq!(back.public_ip, None);
    }

    #[test]
    fn refuses_bad_values() {
        assert!(matches!(
            LeaseAttrs::from_json(&[b' '; MAX_LEASE_VALUE_BYTES + 1]),
            Err(LeaseDecodeError::TooLarge(_))
        ));
        assert_eq!(
            LeaseAttrs::from_json(&[0xff, 0xfe]),
            Err(LeaseDecodeError::NotUtf8)
        );
        assert!(LeaseAttrs::from_json(br#"{"PublicIP":"300.1.1.1"}"#).is_err());
        assert!(LeaseAttrs::from_json(br#"{"PublicIP":7}"#).is_err());
        assert!(LeaseAttrs::from_json(b"[]").is_err());
    }

    #[test]
    fn keys_match_case_insensitively_as_in_go() {
        let attrs =
            LeaseAttrs::from_json(br#"{"publicip":"192.0.2.9","backendtype":"vxlan"}"#).unwrap();
        assert_eq!(attrs.public_ip, Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(attrs.backend_type, "vxlan");
    }

    #[test]
    fn raw_backend_data_is_compacted() {
        let attrs =
            LeaseAttrs::from_json(br#"{"PublicIP":"192.0.2.2","BackendData": { "VNI" : 1 }}"#)
                .unwrap();
        assert_eq!(attrs.backend_data.unwrap().as_str(), r#"{"VNI":1}"#);
    }

    #[test]
    fn raw_backend_data_keeps_key_order_and_string_spaces() {
        let raw = RawJson::parse(r#"{ "PublicKey" : "a b\" c", "Port": 51820 }"#).unwrap();
        assert_eq!(raw.as_str(), r#"{"PublicKey":"a b\" c","Port":51820}"#);
    }
}
