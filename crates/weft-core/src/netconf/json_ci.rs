//! JSON objects read the way Go's `encoding/json` reads them into a struct.
//!
//! flannel decodes net-conf.json (and each backend's options) with
//! `json.Unmarshal` into Go structs, and that decoder matches object keys to
//! field names case-insensitively: `"network"`, `"NETWORK"` and `"Network"`
//! all fill `Network`. Configs in the wild rely on it (`"vni"`, `"type"`), so
//! weft must match keys the same way, which serde's derive cannot do.
//!
//! The rules reproduced here:
//! - keys are compared with Go's `bytes.EqualFold`-style folding
//!   ([`equal_fold`]);
//! - members are applied in document order, so a later duplicate overrides an
//!   earlier one, whatever the case of either;
//! - a `null` member leaves the field as it was (Go: "unmarshaling a JSON
//!   null into any other Go type has no effect");
//! - a member of the wrong type is an error even when a later duplicate is
//!   fine (Go reports the first type error after decoding everything);
//! - keys that match no field are ignored (weft also reports them).
//!
//! The object is kept as raw member values in document order (serde_json's
//! `Value` map would sort the keys and lose that order).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::NetConfError;

/// A JSON string, borrowed from the document unless it had escapes.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// One JSON object's members in document order, duplicates kept, borrowed
/// from the document: peers' backend data is read through this on every
/// reconcile pass, where building a `Value` tree per peer cost a tenth of
/// the pass at 5 000 peers.
pub(crate) struct CiObject<'a> {
    members: Vec<(Text<'a>, &'a RawValue)>,
}

impl<'de> Deserialize<'de> for CiObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = CiObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CiObject<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(member) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(CiObject { members })
            }
        }
        d.deserialize_map(Members)
    }
}

impl<'a> CiObject<'a> {
    /// Parses a whole document, which must be an object.
    pub(crate) fn parse_document(json: &'a str) -> Result<CiObject<'a>, NetConfError> {
        // Parse once as a plain value for the syntax check and to describe a
        // non-object; then again keeping member order.
        let value: Value = serde_json::from_str(json).map_err(syntax)?;
        if !value.is_object() {
            return Err(NetConfError::NotAnObject(describe(&value, false)));
        }
        serde_json::from_str(json).map_err(syntax)
    }

    /// Reads a member value that must be an object (`Backend`); when it is
    /// not one, the parsed value is handed back for the error message.
    pub(crate) fn parse_member(raw: &'a RawValue) -> Result<CiObject<'a>, Value> {
        let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        if !value.is_object() {
            return Err(value);
        }
        serde_json::from_str(raw.get()).map_err(|_| value)
    }

    /// Every member whose key folds to `name`, in document order, `null`s
    /// left out (they change nothing in Go).
    fn matches<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a RawValue> + 's {
        self.members
            .iter()
            .filter(move |(k, v)| equal_fold(&k.0, name) && v.get() != "null")
            .map(|(_, v)| *v)
    }

    /// The value `name` ends up with: each matching member is converted by
    /// `read` (so a bad early duplicate is still an error) and the last one
    /// wins.
    pub(crate) fn read<T, E>(
        &self,
        name: &str,
        mut read: impl FnMut(&'a RawValue) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let mut last = None;
        for raw in self.matches(name) {
            last = Some(read(raw)?);
        }
        Ok(last)
    }

    /// The keys, as written, that fold to none of `known`.
    pub(crate) fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in &self.members {
            if !known.iter().any(|n| equal_fold(&k.0, n)) && !out.iter().any(|o| *o == k.0) {
                out.push(k.0.clone().into_owned());
            }
        }
        out
    }
}

/// serde_json refuses numbers beyond `f64` (`1e400`) as a syntax error;
/// they are valid JSON, so say what is actually wrong.
fn syntax(e: serde_json::Error) -> NetConfError {
    let text = e.to_string();
    match text.strip_prefix("number out of range ") {
        Some(position) => NetConfError::NumberOutOfRange(position.to_string()),
        None => NetConfError::Syntax(text),
    }
}

/// Go's case-insensitive key match, for comparing a JSON key with one of
/// weft's (ASCII) field names.
///
/// Go folds ASCII letters and applies Unicode simple case folding to the
/// rest; the only non-ASCII characters that fold onto ASCII letters are
/// U+017F LATIN SMALL LETTER LONG S (→ `s`) and U+212A KELVIN SIGN (→ `k`),
/// so `"ſubnetLen"` fills `SubnetLen` in flannel and does here too.
pub(crate) fn equal_fold(key: &str, name: &str) -> bool {
    let mut k = key.chars().map(fold);
    let mut n = name.chars().map(fold);
    loop {
        match (k.next(), n.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn fold(c: char) -> char {
    match c {
        '\u{017F}' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    }
}

/// Describes a JSON value for an error message: its kind, and its text
/// unless `secret` (a pre-shared key must never be echoed).
pub(crate) fn describe(value: &Value, secret: bool) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => return "an array".into(),
        Value::Object(_) => return "an object".into(),
    };
    if secret {
        return kind.into();
    }
    let text = value.to_string();
    format!("{kind} ({})", truncate(&text))
}

/// Describes a raw member value; numbers are shown as written (`1e30`,
/// `18446744073709551616`), not as serde_json re-prints them.
pub(crate) fn describe_raw(raw: &RawValue, secret: bool) -> String {
    let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    if value.is_number() && !secret {
        return format!("a number ({})", truncate(raw.get().trim()));
    }
    describe(&value, secret)
}

/// A string value quoted for a message, cut short if long.
pub(crate) fn quoted(text: &str) -> String {
    truncate(&format!("{text:?}"))
}

fn truncate(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// An invalid-value error for `field`.
pub(crate) fn invalid(field: &str, expected: &str, raw: &RawValue, secret: bool) -> NetConfError {
    NetConfError::InvalidValue {
        field: field.to_string(),
        expected: expected.to_string(),
        found: describe_raw(raw, secret),
    }
}

/// A JSON boolean (`true`/`false` only, as in Go).
pub(crate) fn bool_of(field: &str, raw: &RawValue) -> Result<bool, NetConfError> {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Bool(b)) => Ok(b),
        _ => Err(invalid(field, "true or false", raw, false)),
    }
}

/// A JSON string.
pub(crate) fn string_of(
    field: &str,
    expected: &str,
    raw: &RawValue,
    secret: bool,
) -> Result<String, NetConfError> {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) => Ok(s),
        _ => Err(invalid(field, expected, raw, secret)),
    }
}

/// An integer written without fraction or exponent (Go refuses `24.0` and
/// `1e2` for integer fields) that fits in `i128`; range checks are the
/// caller's.
pub(crate) fn integer_of(
    field: &str,
    expected: &str,
    raw: &RawValue,
) -> Result<i128, NetConfError> {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .ok_or_else(|| invalid(field, expected, raw, false)),
        _ => Err(invalid(field, expected, raw, false)),
    }
}

/// An integer in `min..=max`, with `expected` naming the range.
pub(crate) fn int_in(
    field: &str,
    min: i128,
    max: i128,
    raw: &RawValue,
) -> Result<i128, NetConfError> {
    let expected = format!("an integer from {min} to {max}");
    let n = integer_of(field, &expected, raw)?;
    if n < min || n > max {
        return Err(invalid(field, &expected, raw, false));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> CiObject<'_> {
        CiObject::parse_document(json).unwrap()
    }

    fn string(o: &CiObject, name: &str) -> Option<String> {
        o.read(name, |r| string_of(name, "a string", r, false))
            .unwrap()
    }

    #[test]
    fn folds_like_go() {
        assert!(equal_fold("network", "Network"));
        assert!(equal_fold("NETWORK", "Network"));
        assert!(equal_fold("\u{017F}ubnetLen", "SubnetLen"));
        assert!(equal_fold("\u{212A}ey", "Key"));
        assert!(!equal_fold("Networks", "Network"));
        assert!(!equal_fold("Netw0rk", "Network"));
        assert!(!equal_fold("Ñetwork", "Network"));
    }

    #[test]
    fn later_duplicate_wins_whatever_its_case() {
        let o = obj(r#"{"Network":"a","network":"b"}"#);
        assert_eq!(string(&o, "Network").as_deref(), Some("b"));
        let o = obj(r#"{"network":"a","Network":"b"}"#);
        assert_eq!(string(&o, "Network").as_deref(), Some("b"));
        let o = obj(r#"{"network":"a","NETWORK":"b","network":"c"}"#);
        assert_eq!(string(&o, "Network").as_deref(), Some("c"));
    }

    #[test]
    fn null_changes_nothing() {
        let o = obj(r#"{"Network":"a","network":null}"#);
        assert_eq!(string(&o, "Network").as_deref(), Some("a"));
        assert_eq!(string(&obj(r#"{"Network":null}"#), "network"), None);
    }

    #[test]
    fn bad_early_duplicate_is_still_an_error() {
        let o = obj(r#"{"SubnetLen":"x","subnetlen":24}"#);
        assert!(
            o.read("SubnetLen", |r| integer_of("SubnetLen", "n", r))
                .is_err()
        );
    }

    #[test]
    fn integers_as_go_reads_them() {
        let o = obj(
            r#"{"a":24,"b":24.0,"c":1e2,"d":-1,"e":18446744073709551615,"f":18446744073709551616}"#,
        );
        let int = |k: &str| o.read(k, |r| integer_of(k, "n", r)).unwrap_or(None);
        assert_eq!(int("a"), Some(24));
        assert_eq!(int("b"), None);
        assert_eq!(int("c"), None);
        assert_eq!(int("d"), Some(-1));
        assert_eq!(int("e"), Some(i128::from(u64::MAX)));
        assert_eq!(int("f"), None);
    }

    #[test]
    fn descriptions_show_numbers_as_written_and_hide_secrets() {
        let o = obj(r#"{"n":1e30,"s":"hunter2"}"#);
        let err = o.read("n", |r| integer_of("n", "a count", r)).unwrap_err();
        assert_eq!(err.to_string(), "n must be a count, found a number (1e30)");
        let err = o.read("s", |r| integer_of("s", "a count", r)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s must be a count, found a string (\"hunter2\")"
        );
        let err = o.read("s", |r| bool_of("s", r).map(|_| ()));
        assert!(err.is_err());
        let secret = o.read("s", |r| Err::<(), _>(invalid("PSK", "x", r, true)));
        assert_eq!(
            secret.unwrap_err().to_string(),
            "PSK must be x, found a string"
        );
    }

    #[test]
    fn unknown_keys_are_listed_once_as_written() {
        let o = obj(r#"{"Network":1,"SubnetLenn":2,"SubnetLenn":3,"x":4}"#);
        assert_eq!(o.unknown_keys(&["Network"]), vec!["SubnetLenn", "x"]);
    }

    #[test]
    fn documents_must_be_objects() {
        assert!(matches!(
            CiObject::parse_document("[1]"),
            Err(NetConfError::NotAnObject(s)) if s == "an array"
        ));
        assert!(matches!(
            CiObject::parse_document("{"),
            Err(NetConfError::Syntax(_))
        ));
    }
}
