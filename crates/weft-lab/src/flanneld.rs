//! Agents that run flanneld (or any binary taking flanneld's command line)
//! instead of weftd: [`crate::LabSpec::flanneld`], [`crate::Lab::set_flanneld`].
//!
//! Why: the benchmark measures real flannel beside weft in the same run,
//! on the same kind of lab. Such an agent gets **only flanneld's flags**
//! (flannel-io/flannel main.go): `--subnet-file`, the store's
//! (`--etcd-endpoints`, or `--kube-subnet-mgr --kubeconfig-file
//! --net-config-path` with `NODE_NAME`), `--public-ip`/`--iface` in a cloud,
//! then the lab's and the node's extra arguments. None of weft's
//! (`--status-socket`, `--subnet-lease-ttl`), so flanneld's leases keep
//! their 24 h TTL. flanneld has no local store: such a lab runs etcd (or
//! the Kubernetes API test server).
//!
//! Readiness without a status socket: the node's subnet.env is removed
//! before the start, and the agent is ready once it exists again.
//! flanneld writes it once its device is up and its lease held, the
//! moment its own `/readyz` turns 200 (it finds its lease again by its
//! public IP, so the removed file costs it nothing). The node's subnets
//! come from that file. The process is recognised in `/proc` by the
//! binary's own file name, with the node's directory in an argument.
//!
//! weftd takes flanneld's command line, so `Some(<bin_dir>/weftd)` is a
//! legitimate stand-in that exercises this plumbing where no flanneld is
//! installed (crates/weft-lab/tests/lab_api.rs).

use std::path::Path;
use std::process::Command;

use crate::LabError;
use crate::agent::AgentStatus;
use crate::names::NodePaths;
use crate::state::{LabState, StoreState};

/// The program name the agent has in `/proc`: the binary's file name.
pub fn program(flanneld: &Path) -> String {
    flanneld.file_name().map_or_else(
        || "flanneld".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// flanneld's command line for the node of `paths`, flanneld's flags only.
pub fn command(state: &LabState, paths: &NodePaths, flanneld: &Path) -> Result<Command, LabError> {
    let mut cmd = Command::new(flanneld);
    if !crate::agent::flanneld_flags(&mut cmd, state, paths) {
        return Err(LabError::Invalid(
            "flanneld has no local store: bring the lab up with the etcd store \
             (`--store etcd`) to run flanneld agents"
                .to_owned(),
        ));
    }
    Ok(cmd)
}

/// Removes the node's subnet.env before a start, so that its presence
/// means this start wrote it.
pub fn before_start(paths: &NodePaths) -> Result<(), LabError> {
    match std::fs::remove_file(&paths.subnet_env) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io(
            format!("cannot remove {}", paths.subnet_env.display()),
            e,
        )),
    }
}

/// The agent's status once it wrote subnet.env: ready, with the subnets
/// the file holds; `Err` says what is still missing.
pub fn ready_status(state: &LabState, paths: &NodePaths) -> Result<AgentStatus, String> {
    let text = match std::fs::read_to_string(&paths.subnet_env) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{} does not exist yet", paths.subnet_env.display()));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", paths.subnet_env.display())),
    };
    let env = weft_core::subnet_env::SubnetEnv::parse(&text)
        .map_err(|e| format!("{}: {e}", paths.subnet_env.display()))?;
    let subnets: Vec<String> = env
        .subnet
        .map(|s| s.trunc().to_string())
        .into_iter()
        .chain(env.ipv6_subnet.map(|s| s.trunc().to_string()))
        .collect();
    if subnets.is_empty() {
        return Err(format!(
            "{} holds no FLANNEL_SUBNET",
            paths.subnet_env.display()
        ));
    }
    let store = match state.store {
        StoreState::Local { .. } => "local",
        StoreState::Etcd { .. } => "etcd",
        StoreState::Kube(_) => "kube",
    };
    // The shape of weftd's /v1/status, so that callers read one type.
    let view = serde_json::json!({
        "version": "flanneld (no status socket)",
        "store": store,
        "backend": state.backend.as_str(),
        "ready": true,
        "lease": {
            "subnets": subnets,
            "public_ip": null,
            "public_ipv6": null,
            "expires_in_secs": null,
            "reservation": false,
        },
        "snapshot_revision": null,
        "peers": [],
        "skipped": [],
        "desired": null,
    });
    crate::agent::parse_status(view.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_the_file_name() {
        assert_eq!(program(Path::new("/opt/flannel/flanneld")), "flanneld");
        assert_eq!(program(Path::new("target/release/weftd")), "weftd");
    }
}
