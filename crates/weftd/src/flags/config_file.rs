//! `--config FILE`: flags from a YAML file, as K3s reads its config.yaml —
//! keys are flag names without the leading dashes. The file has the lowest
//! precedence (command line > `FLANNELD_*` > file) and, unlike flanneld's
//! environment handling, an unknown key or a bad value is an error: a typo
//! in a config file must not silently change nothing.

use std::collections::HashSet;

use serde_json::Value;

use super::Flags;
use super::table::{self, Kind};

/// Applies the file's values to every flag not in `already_set`.
pub fn apply(
    text: &str,
    path: &str,
    flags: &mut Flags,
    already_set: &HashSet<&'static str>,
) -> Result<(), Vec<String>> {
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|e| vec![format!("{path}: not valid YAML: {e}")])?;
    let map = match doc {
        Value::Object(map) => map,
        Value::Null => return Ok(()),
        _ => {
            return Err(vec![format!(
                "{path}: expected a mapping of flag names to values"
            )]);
        }
    };
    let mut problems = Vec::new();
    for (key, value) in map {
        let Some(spec) = table::lookup(&key).filter(|s| s.name != "config" && s.name != "version")
        else {
            problems.push(format!("{path}: unknown key {key:?} (keys are weftd flag names without dashes, e.g. etcd-endpoints)"));
            continue;
        };
        if already_set.contains(spec.name) {
            continue;
        }
        let items: Vec<String> = match (&value, spec.kind) {
            (Value::Array(list), Kind::Repeated(_)) => list.iter().map(scalar).collect(),
            (Value::Array(list), Kind::Value(_)) if spec.name == "etcd-endpoints" => {
                vec![list.iter().map(scalar).collect::<Vec<_>>().join(",")]
            }
            (Value::Array(_), _) | (Value::Object(_), _) => {
                problems.push(format!("{path}: {key} takes a single value"));
                continue;
            }
            (v, _) => vec![scalar(v)],
        };
        for item in items {
            if let Err(e) = (spec.set)(flags, &item) {
                problems.push(format!("{path}: invalid value {item:?} for {key}: {e}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
