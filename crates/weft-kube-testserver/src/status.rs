//! API errors in the shape the real API server sends them: a `Status`
//! object (`kind: Status`, `status: Failure`, `reason`, `details`, `code`)
//! with the HTTP status code equal to `code`.
//!
//! Follows "API Concepts → Response codes / Status" and the `Status` type of
//! meta/v1 (<https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/>);
//! messages are the ones `k8s.io/apimachinery/pkg/api/errors` formats.

use serde_json::{Value, json};

/// One API error, ready to be sent as a response or as a watch `ERROR`
/// event's object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(details), Some(map)) = (&self.details, status.as_object_mut()) {
            map.insert("details".into(), details.clone());
        }
        status
    }

    /// An error about one object: the server names it in `details`.
    fn about(
        code: u16,
        reason: &'static str,
        resource: &str,
        name: &str,
        message: String,
    ) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details: Some(json!({"name": name, "kind": resource})),
        }
    }

    /// `errors.NewNotFound`: `nodes "x" not found`.
    pub fn not_found(resource: &str, name: &str) -> ApiError {
        let message = format!("{resource} \"{name}\" not found");
        Self::about(404, "NotFound", resource, name, message)
    }

    /// What the server answers for a path it does not serve.
    pub fn no_route() -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
            details: None,
        }
    }

    /// `errors.NewConflict` for a failed resourceVersion precondition.
    pub fn conflict(resource: &str, name: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been \
             modified; please apply your changes to the latest version and try again"
        );
        Self::about(409, "Conflict", resource, name, message)
    }

    /// `errors.NewAlreadyExists`.
    pub fn already_exists(resource: &str, name: &str) -> ApiError {
        let message = format!("{resource} \"{name}\" already exists");
        Self::about(409, "AlreadyExists", resource, name, message)
    }

    /// RBAC's denial, as the authorizer words it.
    pub fn forbidden(
        user: &str,
        verb: &str,
        resource: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> ApiError {
        let kind = resource.split('/').next().unwrap_or(resource);
        let subject = match name {
            Some(n) => format!("{kind} \"{n}\""),
            None => kind.to_owned(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        let mut details = json!({"kind": kind});
        if let (Some(n), Some(map)) = (name, details.as_object_mut()) {
            map.insert("name".into(), Value::String(n.to_owned()));
        }
        ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" \
                 in API group \"\" {scope}"
            ),
            details: Some(details),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".into(),
            details: None,
        }
    }

    /// The watch cache's answer to a resourceVersion older than its window
    /// (`errors.NewResourceExpired`; reason `Expired`, code 410).
    pub fn expired(requested: u64, oldest: u64) -> ApiError {
        ApiError {
            code: 410,
            reason: "Expired",
            message: format!("too old resource version: {requested} ({oldest})"),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    /// `errors.NewInvalid` (422) with one cause.
    pub fn invalid(resource: &str, name: &str, field: &str, why: &str) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{resource} \"{name}\" is invalid: {field}: {why}"),
            details: Some(json!({
                "name": name,
                "kind": resource,
                "causes": [{"reason": "FieldValueInvalid", "message": why, "field": field}],
            })),
        }
    }

    /// A PATCH body in a media type the server does not take.
    pub fn unsupported_media_type(got: &str) -> ApiError {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/merge-patch+json, application/strategic-merge-patch+json \
                 (got {got:?})"
            ),
            details: None,
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: "the server does not allow this method on the requested resource".into(),
            details: None,
        }
    }

    /// An injected server failure (tests simulate an overloaded server).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 500,
            reason: "InternalError",
            message: message.into(),
            details: None,
        }
    }
}
