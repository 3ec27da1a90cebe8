//! A small Kubernetes API server for weft's tests.
//!
//! No kube-apiserver can run where weft is built and tested, so the
//! Kubernetes lease store is tested against this: it serves what weft uses
//! — Nodes (get, list, watch, merge and strategic-merge PATCH on the main
//! resource and on `status`) and Pods (get) — following the real API
//! contract, each behaviour naming the Kubernetes documentation it follows.
//! Tests drive the cluster through [`TestServer`]'s methods (or, from
//! another process, the HTTP control API in `control.rs`): register and
//! delete nodes, assign podCIDRs as kube-controller-manager does, compact
//! history, deny verbs, inject conflicts and failures, stop and start
//! serving.

mod alloc;
mod api;
mod control;
mod faults;
mod objects;
mod options;
mod patch;
mod server;
mod state;
mod status;
mod time;
mod validate;
mod watch;

pub use alloc::AllocError;
pub use faults::RequestRecord;
pub use objects::NodeSpec;
pub use options::ServerOptions;
pub use patch::{PatchError, merge_patch, strategic_merge_node};
pub use server::{ServerError, TestServer, kubeconfig};
pub use status::ApiError;
pub use time::rfc3339;
