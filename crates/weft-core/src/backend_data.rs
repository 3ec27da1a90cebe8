//! Typed `BackendData` per backend, as flannel publishes it in leases and
//! node annotations. Peers' data is untrusted: decoding checks every field.

use std::borrow::Cow;

use serde::Serialize;

use crate::lease::RawJson;
use crate::mac::Mac;
use crate::netconf::json_ci::{CiObject, Text};
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

/// The backend-data object, read as flannel's Go decoder reads it (keys
/// fold case, a later duplicate wins, `null` changes nothing; see
/// [`CiObject`]).
fn object(raw: Option<&RawJson>) -> Result<CiObject<'_>, BackendDataError> {
    let raw = raw.ok_or(BackendDataError::Missing)?;
    match serde_json::from_str::<Option<CiObject<'_>>>(raw.as_str()) {
        Ok(Some(members)) => Ok(members),
        Ok(None) => Err(BackendDataError::Missing),
        Err(_) => Err(BackendDataError::NotObject),
    }
}

fn uint_field(
    obj: &CiObject<'_>,
    name: &'static str,
    max: u64,
) -> Result<Option<u64>, BackendDataError> {
    obj.read(name, |v| {
        serde_json::from_str::<u64>(v.get())
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| BackendDataError::Invalid {
                field: name,
                why: format!("expected an integer between 0 and {max}"),
            })
    })
}

fn str_field<'a>(obj: &CiObject<'a>, name: &'static str) -> Result<Cow<'a, str>, BackendDataError> {
    obj.read(name, |v| {
        serde_json::from_str::<Text<'a>>(v.get())
            .map(|t| t.0)
            .map_err(|_| BackendDataError::Invalid {
                field: name,
                why: "expected a string".to_owned(),
            })
    })?
    .ok_or(BackendDataError::MissingField(name))
}

impl VxlanData {
    /// Largest VXLAN network identifier (24 bits).
    pub const MAX_VNI: u32 = (1 << 24) - 1;

    pub fn decode(raw: Option<&RawJson>) -> Result<VxlanData, BackendDataError> {
        let obj = object(raw)?;
        let vni = uint_field(&obj, "VNI", u64::from(Self::MAX_VNI))?.unwrap_or(0) as u32;
        let mac: Mac =
            str_field(&obj, "VtepMAC")?
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
        let obj = object(raw)?;
        let public_key = WgKey::from_base64(&str_field(&obj, "PublicKey")?).map_err(|e| {
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
        let port = uint_field(&obj, "Port", u64::from(u16::MAX))?.unwrap_or(0) as u16;
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
    fn members_apply_in_document_order_as_go_does() {
        let mac = "2e:1d:8b:97:dc:f0".parse().unwrap();
        for (json, vni) in [
            // A later duplicate wins, whatever the case of either.
            (r#"{"VNI":2,"vni":3,"VtepMAC":"2e:1d:8b:97:dc:f0"}"#, 3),
            (r#"{"vni":3,"VNI":2,"VtepMAC":"2e:1d:8b:97:dc:f0"}"#, 2),
            // A null member leaves the field as it was.
            (r#"{"VNI":4,"VNI":null,"VtepMAC":"2e:1d:8b:97:dc:f0"}"#, 4),
            // Escapes in keys and values are decoded.
            (
                r#"{"V\u004eI":5,"VtepMAC":"2e:1d:8b:97:dc:\u0066\u0030"}"#,
                5,
            ),
        ] {
            assert_eq!(
                VxlanData::decode(Some(&raw(json))),
                Ok(VxlanData { vni, vtep_mac: mac }),
                "{json}"
            );
        }
        // A member of the wrong type is an error even if a later one is fine.
        assert!(
            VxlanData::decode(Some(&raw(
                r#"{"VNI":"1","VNI":1,"VtepMAC":"2e:1d:8b:97:dc:f0"}"#
            )))
            .is_err()
        );
        assert_eq!(
            VxlanData::decode(Some(&raw(r#"{"VNI":1,"VtepMAC":null}"#))),
            Err(BackendDataError::MissingField("VtepMAC"))
        );
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
