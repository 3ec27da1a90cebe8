//! `weft check`: a preflight for a node, before or after installing weft.
//!
//! Operators of flannel verify a node by hand (probe the kernel for vxlan
//! and WireGuard, read sysctls, look for firewall rules on 8472/51820, check
//! the interface MTU). This does it for them; every finding says what was
//! seen and the exact fix. It changes nothing on the host: kernel features
//! are probed inside a throwaway network namespace.

mod clock;
mod findings;
mod firewall;
mod ipsec;
mod kernel;
mod kube;
mod nat;
mod node;
mod offload;

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::out;

pub use findings::{Finding, Level};
pub use kube::KubeCheck;

/// What `weft check` is asked to look at.
#[derive(Debug, Clone, Default)]
pub struct CheckInput {
    /// net-conf.json to check the node against (backend, families, MTU).
    pub net_config: Option<PathBuf>,
    /// etcd endpoints to test reachability of, and how to log in, as
    /// weftd's flags.
    pub etcd: weft_store::etcd::EtcdOptions,
    pub etcd_prefix: String,
    /// The Kubernetes store (`--kube-subnet-mgr`), when asked for.
    pub kube: Option<kube::KubeCheck>,
    /// `--iface`-style choice of the external interface (default: the
    /// default route's).
    pub iface: Option<String>,
    /// weftd's `--public-ip`: the address peers reach this node at, when it
    /// is not on the interface (a node behind NAT).
    pub public_ip: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub findings: Vec<Finding>,
}

/// Runs every check.
pub fn run_checks(input: &CheckInput) -> CheckReport {
    let mut findings = Vec::new();
    let cfg = node::load_config(input, &mut findings);
    findings.extend(kernel::features(cfg.as_ref()));
    if matches!(
        cfg.as_ref().map(|c| &c.backend),
        Some(weft_core::netconf::BackendConfig::Ipsec(_))
    ) {
        findings.extend(ipsec::findings());
    }
    findings.extend(node::sysctls(cfg.as_ref()));
    let (interface, external) = node::interface(input, cfg.as_ref());
    findings.extend(interface);
    findings.extend(firewall::ports(cfg.as_ref()));
    findings.extend(offload::findings(cfg.as_ref(), external.as_deref()));
    findings.extend(node::store(input));
    if let Some(k) = &input.kube {
        findings.extend(kube::findings(k));
    }
    CheckReport {
        ok: findings.iter().all(|f| f.level != Level::Fail),
        findings,
    }
}

/// `weft check [--json]`: exit 0 unless a finding fails.
pub fn run(input: &CheckInput, json: bool) -> ExitCode {
    let report = run_checks(input);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                out::line(&text);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        for f in &report.findings {
            out::line(&format!("{:<5} {:<22} {}", f.level.label(), f.name, f.seen));
            if let Some(fix) = &f.fix {
                out::line(&format!("      {:<22} fix: {fix}", ""));
            }
        }
        let fails = report
            .findings
            .iter()
            .filter(|f| f.level == Level::Fail)
            .count();
        let warns = report
            .findings
            .iter()
            .filter(|f| f.level == Level::Warn)
            .count();
        out::line(&format!(
            "{} checks: {fails} failed, {warns} warnings",
            report.findings.len()
        ));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs one store query for a check on a runtime of its own: the checks
/// are synchronous and each asks its store one thing. A runtime that cannot
/// start is reported like the query failing.
fn query<T, F>(fut: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(fut))
}
