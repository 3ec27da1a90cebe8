//! The checks the API server makes on a Node after a PATCH: immutable
//! identity fields, the subresource's reach (a `status` PATCH cannot change
//! `spec`, a main-resource PATCH cannot change `status`: `nodeStrategy` /
//! `nodeStatusStrategy`.PrepareForUpdate), label and annotation syntax
//! ("Object Names and IDs", "Annotations → Syntax and character set":
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/annotations/>),
//! the 256 KiB annotation limit, and podCIDR immutability.

use serde_json::Value;

use crate::status::ApiError;

/// Total size the API server allows for all annotations of one object.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Fixes what the server never lets a PATCH change, then validates.
/// `status` says whether the PATCH came through the `status` subresource.
pub fn node_update(old: &Value, new: &mut Value, name: &str, status: bool) -> Result<(), ApiError> {
    if new["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            new["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    for field in ["uid", "creationTimestamp"] {
        new["metadata"][field] = old["metadata"][field].clone();
    }
    new["kind"] = old["kind"].clone();
    new["apiVersion"] = old["apiVersion"].clone();
    if status {
        new["spec"] = old["spec"].clone();
    } else {
        new["status"] = old["status"].clone();
        for field in ["podCIDR", "podCIDRs"] {
            let (was, now) = (&old["spec"][field], &new["spec"][field]);
            if !was.is_null() && was != now {
                return Err(ApiError::invalid(
                    "Node",
                    name,
                    &format!("spec.{field}"),
                    "Forbidden: node updates may not change podCIDR except from \"\" to valid",
                ));
            }
        }
    }
    for (field, is_annotations) in [("labels", false), ("annotations", true)] {
        string_map(new, name, field, is_annotations)?;
    }
    // The server decodes the patched object into its type: a field of the
    // wrong JSON type is a 400, never stored.
    serde_json::from_value::<k8s_openapi::api::core::v1::Node>(new.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding the patched Node: {e}")))?;
    Ok(())
}

fn string_map(node: &Value, name: &str, field: &str, annotations: bool) -> Result<(), ApiError> {
    let map = match &node["metadata"][field] {
        Value::Null => return Ok(()),
        Value::Object(map) => map,
        _ => {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal into Go struct field ObjectMeta.metadata.{field} of type map[string]string"
            )));
        }
    };
    let mut size = 0;
    for (key, value) in map {
        let Some(value) = value.as_str() else {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.{field} of type string",
                json_kind(value)
            )));
        };
        if let Err(why) = qualified_name(key) {
            return Err(ApiError::invalid(
                "Node",
                name,
                &format!("metadata.{field}"),
                &format!("Invalid value: {key:?}: {why}"),
            ));
        }
        size += key.len() + value.len();
    }
    if annotations && size > MAX_ANNOTATIONS_BYTES {
        return Err(ApiError::invalid(
            "Node",
            name,
            "metadata.annotations",
            "Too long: must have at most 262144 bytes",
        ));
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        _ => "null",
    }
}

/// `validation.IsQualifiedName`: `[prefix/]name`, the prefix a DNS-1123
/// subdomain, the name at most 63 characters of `[A-Za-z0-9_.-]` that
/// starts and ends alphanumeric.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case \
                        alphanumeric characters, '-' or '.', and must start and end with an \
                        alphanumeric character"
                    .into(),
            );
        }
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty()
        || name.len() > 63
        || !alnum(name.chars().next())
        || !alnum(name.chars().last())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and \
                    must start and end with an alphanumeric character (at most 63 characters)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert!(qualified_name("flannel.alpha.coreos.com/backend-data").is_ok());
        assert!(qualified_name("example.com/x-public-ip").is_ok());
        assert!(qualified_name("plain").is_ok());
        assert!(qualified_name("Flannel.Alpha.coreos.com/backend-data").is_err());
        assert!(qualified_name("a/b/c").is_err());
        assert!(qualified_name("example.com/-x").is_err());
    }
}
