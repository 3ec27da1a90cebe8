//! PATCH bodies: JSON merge patch and strategic merge patch.
//!
//! - `application/merge-patch+json` is RFC 7386: objects merge key by key,
//!   `null` deletes a key, anything else (lists included) replaces.
//! - `application/strategic-merge-patch+json` follows "Update API Objects in
//!   Place Using kubectl patch" and the strategic-merge-patch design
//!   (<https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/>,
//!   sig-api-machinery `strategic-merge-patch.md`): like a merge patch, but
//!   lists whose Go field carries `patchStrategy:"merge"` merge element by
//!   element on their `patchMergeKey` (for a Node: `status.conditions` and
//!   `status.addresses` by `type`, `spec.taints` by `key`,
//!   `status.volumesAttached` by `name`, `metadata.ownerReferences` by
//!   `uid`; `metadata.finalizers` merges as a set), and the directives
//!   `$patch: replace|delete`, `$setElementOrder/<list>`, `$retainKeys` and
//!   `$deleteFromPrimitiveList/<list>` are honoured.

use serde_json::{Map, Value};

/// How a list at some path merges under a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    Replace,
    MergeOnKey(&'static str),
    PrimitiveSet,
}

/// The `patchStrategy`/`patchMergeKey` tags of `core/v1.Node` and
/// `meta/v1.ObjectMeta` for the lists that have one.
fn node_list_strategy(path: &[String]) -> ListStrategy {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["status", "conditions"] | ["status", "addresses"] => ListStrategy::MergeOnKey("type"),
        ["spec", "taints"] => ListStrategy::MergeOnKey("key"),
        ["status", "volumesAttached"] => ListStrategy::MergeOnKey("name"),
        ["metadata", "ownerReferences"] => ListStrategy::MergeOnKey("uid"),
        ["metadata", "finalizers"] => ListStrategy::PrimitiveSet,
        _ => ListStrategy::Replace,
    }
}

/// Why a patch body could not be applied (a 400 or 422 for the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is not a JSON object")]
    NotObject,
    #[error("unknown patch directive {0:?}")]
    UnknownDirective(String),
    #[error("element of merging list {list} has no merge key {key:?}")]
    MissingMergeKey { list: String, key: &'static str },
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            let mut out = t.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(t.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (_, Value::Object(p)) => merge_patch(&Value::Object(Map::new()), &Value::Object(p.clone())),
        (_, p) => p.clone(),
    }
}

/// A strategic merge patch on a Node.
pub fn strategic_merge_node(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let (Value::Object(t), Value::Object(p)) = (target, patch) else {
        return Err(PatchError::NotObject);
    };
    Ok(merge_map(t, p, &mut Vec::new())?.map_or(Value::Object(Map::new()), Value::Object))
}

/// Merges one map; `Ok(None)` when a `$patch: delete` removes it.
fn merge_map(
    target: &Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(Some(strip_directives(patch))),
        Some("delete") => return Ok(None),
        Some(other) => return Err(PatchError::UnknownDirective(other.to_owned())),
        None => {}
    }
    let mut out = target.clone();
    for (key, value) in patch {
        if key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(have)), Value::Array(gone)) = (out.get_mut(list), value) {
                have.retain(|v| !gone.contains(v));
            }
            continue;
        }
        if value.is_null() {
            out.remove(key);
            continue;
        }
        path.push(key.clone());
        let merged = merge_value(target.get(key), value, path)?;
        path.pop();
        match merged {
            Some(v) => out.insert(key.clone(), v),
            None => out.remove(key),
        };
    }
    for (key, order) in patch {
        if let (Some(list), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), order) {
            path.push(list.to_owned());
            if let (Some(Value::Array(items)), ListStrategy::MergeOnKey(mk)) =
                (out.get_mut(list), node_list_strategy(path))
            {
                reorder(items, order, mk);
            }
            path.pop();
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        out.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(Some(out))
}

fn merge_value(
    target: Option<&Value>,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<Option<Value>, PatchError> {
    match (target, patch) {
        (Some(Value::Object(t)), Value::Object(p)) => Ok(merge_map(t, p, path)?.map(Value::Object)),
        (_, Value::Object(p)) => Ok(merge_map(&Map::new(), p, path)?.map(Value::Object)),
        (t, Value::Array(p)) => {
            let have = match t {
                Some(Value::Array(a)) => a.as_slice(),
                _ => &[],
            };
            merge_list(have, p, path).map(|l| Some(Value::Array(l)))
        }
        (_, p) => Ok(Some(p.clone())),
    }
}

fn merge_list(
    target: &[Value],
    patch: &[Value],
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    // `[{"$patch": "replace"}, ...]`: the rest of the list replaces it.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .cloned()
            .collect());
    }
    match node_list_strategy(path) {
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::PrimitiveSet => {
            let mut out = target.to_vec();
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeOnKey(key) => {
            let mut out = target.to_vec();
            for element in patch {
                let Some(id) = element.get(key).cloned() else {
                    return Err(PatchError::MissingMergeKey {
                        list: path.join("."),
                        key,
                    });
                };
                let pos = out.iter().position(|e| e.get(key) == Some(&id));
                let delete = element.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => match merge_value(Some(&out[i]), element, path)? {
                        Some(v) => out[i] = v,
                        None => {
                            out.remove(i);
                        }
                    },
                    (None, false) => {
                        if let Some(v) = merge_value(None, element, path)? {
                            out.push(v);
                        }
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Puts the elements named in `order` first, in that order.
fn reorder(items: &mut Vec<Value>, order: &[Value], key: &str) {
    let mut sorted = Vec::with_capacity(items.len());
    for id in order.iter().filter_map(|o| o.get(key)) {
        if let Some(i) = items.iter().position(|e| e.get(key) == Some(id)) {
            sorted.push(items.remove(i));
        }
    }
    sorted.append(items);
    *items = sorted;
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let p = json!({"a": "z", "c": {"f": null}, "l": [3]});
        assert_eq!(
            merge_patch(&t, &p),
            json!({"a": "z", "c": {"d": "e"}, "l": [3]})
        );
    }

    #[test]
    fn conditions_merge_by_type() {
        let node = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"},
        ]}});
        let patch = json!({"status": {"conditions": [
            {"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"},
        ]}});
        let out = strategic_merge_node(&node, &patch).unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "True"},
                {"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"},
            ])
        );
        // A merge patch replaces the list instead.
        let replaced = merge_patch(&node, &patch);
        assert_eq!(
            replaced["status"]["conditions"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn new_condition_is_appended_and_delete_directive_removes() {
        let node = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let add = json!({"status": {"conditions": [{"type": "X", "status": "False"}]}});
        let out = strategic_merge_node(&node, &add).unwrap();
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
        let del = json!({"status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}});
        let out = strategic_merge_node(&out, &del).unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "X", "status": "False"}])
        );
    }

    #[test]
    fn null_deletes_annotations_and_plain_lists_replace() {
        let node = json!({"metadata": {"annotations": {"a": "1", "b": "2"}},
                          "spec": {"podCIDRs": ["10.0.0.0/24"]}});
        let patch = json!({"metadata": {"annotations": {"a": null, "c": "3"}},
                           "spec": {"podCIDRs": ["10.0.1.0/24"]}});
        let out = strategic_merge_node(&node, &patch).unwrap();
        assert_eq!(out["metadata"]["annotations"], json!({"b": "2", "c": "3"}));
        assert_eq!(out["spec"]["podCIDRs"], json!(["10.0.1.0/24"]));
    }

    #[test]
    fn directives() {
        let node = json!({"status": {"conditions": [
            {"type": "A", "status": "True"}, {"type": "B", "status": "True"}]},
            "metadata": {"finalizers": ["x"], "labels": {"k": "v", "j": "w"}}});
        let patch = json!({
            "status": {"$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}],
                       "conditions": [{"type": "B", "status": "False"}]},
            "metadata": {"finalizers": ["y", "x"], "labels": {"$patch": "replace", "n": "m"}}});
        let out = strategic_merge_node(&node, &patch).unwrap();
        assert_eq!(out["status"]["conditions"][0]["type"], "B");
        assert_eq!(out["status"]["conditions"][0]["status"], "False");
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(out["metadata"]["labels"], json!({"n": "m"}));
        let bad = json!({"metadata": {"$patch": "frobnicate"}});
        assert!(strategic_merge_node(&node, &bad).is_err());
        let keyless = json!({"status": {"conditions": [{"status": "True"}]}});
        assert!(strategic_merge_node(&node, &keyless).is_err());
    }
}
