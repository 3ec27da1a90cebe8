//! Typed `BackendData` per backend, as flannel publishes it in leases and
//! node annotations. Peers' data is untrusted: decoding checks every field.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::lease::RawJson;
use crate::mac::Mac;
use crate::netconf::json_ci::equal_fold;
use crate::wg_key::WgKey;

/// vxlan: `{"VNI":1,"VtepMAC":"2e:1d:8b:97:dc:f0"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VxlanData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: Mac,
}

/// wireguard: `{"PublicKey":"…=","Port":51820}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WireguardData {
    #[serde(rename = "PublicKey")]
    pub public_key: WgKey,
    /// 0 from flannel versions that did not publish a port: the peer then
    /// listens on the same port as we do.
    #[serde(rename = "Port")]
    pub port: u16,
}

/// Why a peer's backend data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendDataError {
    #[error("backend data is missing")]
    Missing,
    #[error("backend data is not a JSON object")]
    NotObject,
    #[error("backend data has no {0} field")]
    MissingField(&'static str),
    #[error("backend data field {field} is invalid: {why}")]
    Invalid { field: &'static str, why: String },
}

/// Looks a key up as Go's `encoding/json` does: exact match first, then a
/// case-insensitive one.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .rev()
            .find(|(k, _)| equal_fold(k, name))
            .map(|(_, v)| v)
    })
}

fn object(raw: Option<&RawJson>) -> Result<Map<String, Value>, BackendDataError> {
    let raw = raw.ok_or(BackendDataError::Missing)?;
    match serde_json::from_str::<Value>(raw.as_str()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Err(BackendDataError::Missing),
        _ => Err(BackendDataError::NotObject),
    }
}

fn uint_field(
    map: &Map<String, Value>,
    name: &'static str,
    max: u64,
) -> Result<Option<u64>, BackendDataError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(BackendDataError::Invalid {
                field: name,
                why: format!("expected an integer between 0 and {max}"),
            }),
        },
    }
}

fn str_field<'a>(
    map: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, BackendDataError> {
    match field(map, name) {
        None | Some(Value::Null) => Err(BackendDataError::MissingField(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(BackendDataError::Invalid {
            field: name,
            why: "expected a string".into(),
        }),
    }
}

impl VxlanData {
    /// Largest VXLAN network identifier (24 bits).
    pub const MAX_VNI: u32 = (1 << 24) - 1;

    pub fn decode(raw: Option<&RawJson>) -> Result<VxlanData, BackendDataError> {
        let map = object(raw)?;
        let vni = uint_field(&map, "VNI", u64::from(Self::MAX_VNI))?.unwrap_or(0) as u32;
        let mac: Mac =
            str_field(&map, "VtepMAC")?
                .parse()
                .map_err(|e: crate::mac::MacParseError| BackendDataError::Invalid {
                    field: "VtepMAC",
                    why: e.to_string(),
                })?;
        if !mac.is_valid_unicast() {
            return Err(BackendDataError::Invalid {
                field: "VtepMAC",
                why: format!("{mac} is not a unicast address"),
            });
        }
        Ok(VxlanData { vni, vtep_mac: mac })
    }

    pub fn encode(&self) -> RawJson {
        raw(self)
    }
}

impl WireguardData {
    pub fn decode(raw: Option<&RawJson>) -> Result<WireguardData, BackendDataError> {
        let map = object(raw)?;
        let public_key = WgKey::from_base64(str_field(&map, "PublicKey")?).map_err(|e| {
            BackendDataError::Invalid {
                field: "PublicKey",
                why: e.to_string(),
            }
        })?;
        if public_key.0 == [0; 32] {
            return Err(BackendDataError::Invalid {
                field: "PublicKey",
                why: "the all-zero key is not a valid public key".into(),
            });
        }
        let port = uint_field(&map, "Port", u64::from(u16::MAX))?.unwrap_or(0) as u16;
        Ok(WireguardData { public_key, port })
    }

    pub fn encode(&self) -> RawJson {
        raw(self)
    }
}

fn raw<T: Serialize>(value: &T) -> RawJson {
    // Both types hold only integers and plain strings: encoding cannot fail,
    // and `null` (no data) is a harmless fallback if it ever did.
    RawJson::from_value(value).unwrap_or_else(|_| RawJson::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> RawJson {
        RawJson::parse(s).unwrap()
    }

    #[test]
    fn vxlan_encodes_in_flannel_field_order() {
        let d = VxlanData {
            vni: 1,
            vtep_mac: "2e:1d:8b:97:dc:f0".parse().unwrap(),
        };
        assert_eq!(
            d.encode().as_str(),
            r#"{"VNI":1,"VtepMAC":"2e:1d:8b:97:dc:f0"}"#
        );
        assert_eq!(VxlanData::decode(Some(&d.encode())), Ok(d));
    }

    #[test]
    fn vxlan_decodes_case_insensitively() {
        let d =
            VxlanData::decode(Some(&raw(r#"{"vni":7,"vtepmac":"2e:1d:8b:97:dc:f0"}"#))).unwrap();
        assert_eq!(d.vni, 7);
    }

    #[test]
    fn vxlan_refuses_hostile_data() {
        for bad in [
            r#"null"#,
            r#"[]"#,
            r#"{"VNI":1}"#,
            r#"{"VNI":1,"VtepMAC":"ff:ff:ff:ff:ff:ff"}"#,
            r#"{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}"#,
            r#"{"VNI":1,"VtepMAC":"00:00:00:00:00:00"}"#,
            r#"{"VNI":16777216,"VtepMAC":"2e:1d:8b:97:dc:f0"}"#,
            r#"{"VNI":-1,"VtepMAC":"2e:1d:8b:97:dc:f0"}"#,
            r#"{"VNI":1,"VtepMAC":5}"#,
        ] {
            assert!(
                VxlanData::decode(Some(&raw(bad))).is_err(),
                "{bad} accepted"
            );
        }
        assert_eq!(VxlanData::decode(None), Err(BackendDataError::Missing));
    }

    #[test]
    fn wireguard_round_trips_in_flannel_field_order() {
        let d = WireguardData {
            public_key: WgKey([7; 32]),
            port: 51820,
        };
        let enc = d.encode();
        assert_eq!(
            enc.as_str(),
            r#"{"PublicKey":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","Port":51820}"#
        );
        assert_eq!(WireguardData::decode(Some(&enc)), Ok(d));
    }

    #[test]
    fn wireguard_refuses_hostile_data() {
        for bad in [
            r#"{"PublicKey":"short","Port":51820}"#,
            r#"{"PublicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","Port":51820}"#,
            r#"{"PublicKey":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","Port":70000}"#,
            r#"{"Port":51820}"#,
        ] {
            assert!(
                WireguardData::decode(Some(&raw(bad))).is_err(),
                "{bad} accepted"
            );
        }
    }
}
