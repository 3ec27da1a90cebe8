//! The network configuration on stdin: the `flannel` entry of the conflist
//! with the runtime's injections (`name`, `cniVersion`, `runtimeConfig`,
//! `prevResult`).
//!
//! Kept as JSON objects rather than typed structs because the plugin's job is
//! to pass the user's `delegate` and `ipam` options through untouched, known
//! to it or not.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::args::{is_plain_name, truncate};
use crate::error::{CniError, code};
use crate::version;

/// flannel's default `subnetFile`.
pub const DEFAULT_SUBNET_FILE: &str = weft_core::subnet_env::DEFAULT_PATH;
/// flannel's default `dataDir`: where the delegate config of each container
/// is kept for DEL.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";

/// The fields the plugin reads; everything else in the input is ignored, as
/// flannel's plugin ignores it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// As written; empty when absent (the spec then means 0.1.0).
    pub cni_version: String,
    pub name: String,
    pub subnet_file: PathBuf,
    pub data_dir: PathBuf,
    /// The user's delegate options; empty when absent.
    pub delegate: Map<String, Value>,
    pub ipam: Option<Map<String, Value>>,
    pub runtime_config: Option<Map<String, Value>>,
    pub prev_result: Option<Value>,
}

impl NetConf {
    /// The spec version the request speaks.
    pub fn version(&self) -> &str {
        if self.cni_version.is_empty() {
            version::DEFAULT
        } else {
            &self.cni_version
        }
    }
}

/// Decodes and checks the input. Decoding failures are code 6 with the
/// position serde reports; fields of the wrong type are code 7 naming them.
pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            code::DECODE,
            format!("cannot decode the network configuration on stdin: {e}"),
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(CniError::new(
            code::DECODE,
            "the network configuration on stdin must be a JSON object",
        ));
    };
    let cni_version = string_field(&obj, "cniVersion")?.unwrap_or_default();
    let name = string_field(&obj, "name")?.unwrap_or_default();
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            "missing network name: the conflist's \"name\" is required",
        ));
    }
    if !is_plain_name(&name) {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            format!(
                "invalid characters found in network name {:?}: use letters, digits, '_', '.' and '-'",
                truncate(&name)
            ),
        ));
    }
    Ok(NetConf {
        cni_version,
        name,
        subnet_file: path_field(&obj, "subnetFile", DEFAULT_SUBNET_FILE)?,
        data_dir: data_dir(&obj)?,
        delegate: object_field(&mut obj, "delegate")?.unwrap_or_default(),
        ipam: object_field(&mut obj, "ipam")?,
        runtime_config: object_field(&mut obj, "runtimeConfig")?,
        prev_result: obj.remove("prevResult").filter(|v| !v.is_null()),
    })
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// A path option; empty means the default. Refused: relative paths (they
/// would resolve against whatever directory the runtime runs in), `..`
/// components (the file would land outside the directory the conflist
/// seems to name) and NUL (no file name holds one; the kernel would see the
/// path cut short).
fn path_field(obj: &Map<String, Value>, key: &str, default: &str) -> Result<PathBuf, CniError> {
    let s = string_field(obj, key)?.unwrap_or_default();
    if s.is_empty() {
        return Ok(PathBuf::from(default));
    }
    let refuse = |problem: &str| {
        Err(CniError::new(
            code::INVALID_NETCONF,
            format!("{key} {:?} {problem} (default {default})", truncate(&s)),
        ))
    };
    if s.contains('\0') {
        return refuse("contains a NUL byte: write the path without it");
    }
    let path = Path::new(&s);
    if !path.is_absolute() {
        return refuse("is not an absolute path: write it from /");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return refuse("has a '..' component: write the path without '..'");
    }
    Ok(PathBuf::from(s))
}

/// `dataDir`: a path as [`path_field`] takes it, and not the filesystem
/// root, where a file named after each container would land among the
/// system's top-level directories.
fn data_dir(obj: &Map<String, Value>) -> Result<PathBuf, CniError> {
    let dir = path_field(obj, "dataDir", DEFAULT_DATA_DIR)?;
    if dir
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
    {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            format!(
                "dataDir {:?} is the filesystem root: the plugin keeps a file per container \
                 there; name a directory of its own (default {DEFAULT_DATA_DIR})",
                dir.display().to_string()
            ),
        ));
    }
    Ok(dir)
}

fn object_field(
    obj: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<Map<String, Value>>, CniError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(wrong_type(key, "an object", &other)),
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> CniError {
    CniError::new(
        code::INVALID_NETCONF,
        format!("{key:?} must be {expected}, got {}", json_kind(got)),
    )
}

/// The JSON type of a value, for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_flannels_defaults() {
        let c = parse(br#"{"cniVersion":"0.3.1","name":"cbr0","type":"flannel"}"#).unwrap();
        assert_eq!(c.subnet_file, Path::new("/run/flannel/subnet.env"));
        assert_eq!(c.data_dir, Path::new("/var/lib/cni/flannel"));
        assert!(c.delegate.is_empty());
        assert_eq!(c.ipam, None);
        assert_eq!(c.version(), "0.3.1");
    }

    #[test]
    fn missing_version_means_0_1_0() {
        assert_eq!(parse(br#"{"name":"n"}"#).unwrap().version(), "0.1.0");
    }

    #[test]
    fn reports_decode_position() {
        let e = parse(b"{\"name\": \"cbr0\",\n  oops}").unwrap_err();
        e.assert_says(code::DECODE, "line 2 column 3");
        assert_eq!(parse(b"[1]").unwrap_err().code, code::DECODE);
    }

    #[test]
    fn checks_names_and_types() {
        assert_eq!(
            parse(br#"{"type":"flannel"}"#).unwrap_err().code,
            code::INVALID_NETCONF
        );
        assert_eq!(
            parse(br#"{"name":"a/b"}"#).unwrap_err().code,
            code::INVALID_NETCONF
        );
        let e = parse(br#"{"name":"n","delegate":"bridge"}"#).unwrap_err();
        e.assert_says(code::INVALID_NETCONF, "\"delegate\" must be an object");
        let e = parse(br#"{"name":"n","dataDir":"relative/dir"}"#).unwrap_err();
        e.assert_msg_has("absolute");
        for (conf, key, problem) in [
            (
                r#"{"name":"n","dataDir":"/var/lib/cni/flannel/../../../etc"}"#,
                "dataDir",
                "'..'",
            ),
            (
                r#"{"name":"n","subnetFile":"/run/../etc/x"}"#,
                "subnetFile",
                "'..'",
            ),
            (
                r#"{"name":"n","subnetFile":"/run/.."}"#,
                "subnetFile",
                "'..'",
            ),
            (
                r#"{"name":"n","dataDir":"/var/lib/cni\u0000/x"}"#,
                "dataDir",
                "NUL",
            ),
            (r#"{"name":"n","subnetFile":"\u0000"}"#, "subnetFile", "NUL"),
            (
                r#"{"name":"n","dataDir":"/"}"#,
                "dataDir",
                "filesystem root",
            ),
            (
                r#"{"name":"n","dataDir":"//./"}"#,
                "dataDir",
                "filesystem root",
            ),
        ] {
            let e = parse(conf.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::INVALID_NETCONF, "{conf}");
            assert!(
                e.msg.starts_with(key) && e.msg.contains(problem),
                "{}",
                e.msg
            );
            assert!(!e.msg.contains('\0'), "{}", e.msg);
        }
        // A '.' component or a name merely starting with dots is a path.
        let c = parse(br#"{"name":"n","dataDir":"/var/lib/./..cni/x.."}"#).unwrap();
        assert_eq!(c.data_dir, Path::new("/var/lib/./..cni/x.."));
        let e = parse(br#"{"name":"n","cniVersion":1}"#).unwrap_err();
        e.assert_msg_has("\"cniVersion\" must be a string");
    }

    #[test]
    fn null_objects_are_absent() {
        let c = parse(br#"{"name":"n","delegate":null,"ipam":null,"prevResult":null}"#).unwrap();
        assert!(c.delegate.is_empty());
        assert_eq!(c.prev_result, None);
    }
}
