//! The Kubernetes API routes weft uses, dispatched by hand so that every
//! error (404, 405, 415, …) is a real `Status` body.
//!
//! - `GET /api/v1/nodes` (list; `?watch=true` streams, see `watch.rs`)
//! - `GET /api/v1/nodes/{name}` and `…/status`
//! - `PATCH /api/v1/nodes/{name}` and `…/status` (merge and strategic
//!   merge; "API Concepts → Patch operations")
//! - `GET /api/v1/namespaces/{ns}/pods/{name}`
//! - `GET /version`, `/healthz`, `/readyz`, `/livez`
//!
//! Authentication is a bearer token ("Authenticating → Static token file"),
//! authorization a deny list of RBAC (verb, resource) pairs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::faults::RequestRecord;
use crate::patch::{self, PatchError};
use crate::server::Shared;
use crate::status::ApiError;
use crate::{control, validate, watch};

/// The query parameters, percent-decoded.
pub(crate) fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub(crate) fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

pub(crate) fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e),
    }
}

/// Everything the server receives goes through here.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let q = query(&uri);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
    shared.lock().faults.log.push(RequestRecord {
        method: method.to_string(),
        uri: uri.to_string(),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match segs.as_slice() {
        ["healthz" | "readyz" | "livez"] => return (StatusCode::OK, "ok").into_response(),
        ["weft-test", "v1", rest @ ..] => {
            return control::handle(&shared, &method, rest, &q, &body);
        }
        _ => {}
    }
    if let Err(e) = authenticate(&shared, &headers) {
        return error_response(&e);
    }
    let get = method == Method::GET;
    let patch = method == Method::PATCH;
    match segs.as_slice() {
        ["version"] if get => json_response(200, &version()),
        ["api", "v1", "nodes"] if get => {
            let watching = matches!(param(&q, "watch"), Some("true" | "1"));
            let verb = if watching { "watch" } else { "list" };
            if let Err(e) = authorize(&shared, verb, "nodes", None, None) {
                return error_response(&e);
            }
            if let Err(e) = selectors_unsupported(&q) {
                return error_response(&e);
            }
            if watching {
                watch::serve(shared, &q)
            } else {
                respond(Ok(shared.lock().list_nodes()))
            }
        }
        ["api", "v1", "nodes", name] | ["api", "v1", "nodes", name, "status"] if get => {
            let resource = if segs.len() == 5 {
                "nodes/status"
            } else {
                "nodes"
            };
            respond(
                authorize(&shared, "get", resource, Some(name), None)
                    .and_then(|()| shared.lock().get_node(name)),
            )
        }
        ["api", "v1", "nodes", name] | ["api", "v1", "nodes", name, "status"] if patch => {
            let status = segs.len() == 5;
            let resource = if status { "nodes/status" } else { "nodes" };
            respond(
                authorize(&shared, "patch", resource, Some(name), None).and_then(|()| {
                    patch_node(&shared, name, status, content_type.as_deref(), &body)
                }),
            )
        }
        ["api", "v1", "namespaces", ns, "pods", name] if get => respond(
            authorize(&shared, "get", "pods", Some(name), Some(ns))
                .and_then(|()| shared.lock().get_pod(ns, name)),
        ),
        ["api", "v1", "nodes", ..] | ["api", "v1", "namespaces", _, "pods", _] => {
            error_response(&ApiError::method_not_allowed())
        }
        _ => error_response(&ApiError::no_route()),
    }
}

fn version() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-weft-testserver",
           "platform": "linux/amd64"})
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let state = shared.lock();
    let Some(token) = &state.opts.token else {
        return Ok(());
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if sent == Some(token.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// RBAC (deny list) and injected failures for one request.
fn authorize(
    shared: &Shared,
    verb: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let mut state = shared.lock();
    if state
        .faults
        .forbidden
        .contains(&(verb.to_owned(), resource.to_owned()))
    {
        return Err(ApiError::forbidden(
            &state.opts.user,
            verb,
            resource,
            name,
            namespace,
        ));
    }
    if let Some(code) = state.faults.take_failure(verb, resource) {
        let mut e = ApiError::internal("injected failure");
        e.code = code;
        if code == 503 {
            e.reason = "ServiceUnavailable";
        }
        return Err(e);
    }
    Ok(())
}

/// weft never filters nodes server-side; a selector here would mean a
/// client this server cannot answer truthfully.
fn selectors_unsupported(q: &[(String, String)]) -> Result<(), ApiError> {
    for p in ["labelSelector", "fieldSelector"] {
        if param(q, p).is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(format!(
                "{p} is not supported by weft-kube-testserver"
            )));
        }
    }
    Ok(())
}

/// `PATCH nodes/{name}[/status]`.
fn patch_node(
    shared: &Shared,
    name: &str,
    status: bool,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut state = shared.lock();
    if state.faults.take_concurrent_write(name) {
        state.modify_node(name, |n| {
            if let Some(c) = n["status"]["conditions"].get_mut(0) {
                c["lastHeartbeatTime"] = Value::String(crate::time::now());
            }
        })?;
    }
    let old = state.get_node(name)?;
    let mut new = match content_type {
        Some("application/merge-patch+json") => patch::merge_patch(&old, &patch),
        Some("application/strategic-merge-patch+json") => patch::strategic_merge_node(&old, &patch)
            .map_err(|e: PatchError| ApiError::bad_request(e.to_string()))?,
        other => return Err(ApiError::unsupported_media_type(other.unwrap_or(""))),
    };
    // "resourceVersion in a patch is a precondition" (API Concepts →
    // Resource versions; optimistic concurrency).
    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::conflict("nodes", name));
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    validate::node_update(&old, &mut new, name, status)?;
    if new == old {
        // A no-op write does not bump the resourceVersion nor emit an event.
        return Ok(old);
    }
    Ok(state.replace_node(new))
}
