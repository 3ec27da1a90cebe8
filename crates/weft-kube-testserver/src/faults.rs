//! What tests inject: RBAC denials, concurrent writers, failing requests,
//! and a log of what the client sent.

use std::collections::{BTreeMap, BTreeSet};

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub content_type: Option<String>,
    pub body: String,
}

/// Injected faults. Verbs and resources are RBAC's: `get`, `list`,
/// `watch`, `patch`; `nodes`, `nodes/status`, `pods`.
#[derive(Debug, Default)]
pub struct Faults {
    /// (verb, resource) pairs the caller's role does not grant: 403.
    pub forbidden: BTreeSet<(String, String)>,
    /// node → how many upcoming PATCHes find the node changed by another
    /// writer (the kubelet) just before they apply, so that a
    /// resourceVersion precondition in them fails with a real 409.
    pub concurrent_writes: BTreeMap<String, u32>,
    /// (verb, resource) → (HTTP code, remaining count): fail that many
    /// requests with an InternalError/ServiceUnavailable-style Status.
    pub fail_next: BTreeMap<(String, String), (u16, u32)>,
    pub log: Vec<RequestRecord>,
}

impl Faults {
    /// Takes one injected failure for this request, if any is queued.
    pub fn take_failure(&mut self, verb: &str, resource: &str) -> Option<u16> {
        let key = (verb.to_owned(), resource.to_owned());
        let (code, left) = self.fail_next.get_mut(&key)?;
        let code = *code;
        *left -= 1;
        if *left == 0 {
            self.fail_next.remove(&key);
        }
        Some(code)
    }

    /// Takes one pending concurrent write on `node`.
    pub fn take_concurrent_write(&mut self, node: &str) -> bool {
        match self.concurrent_writes.get_mut(node) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}
