//! One `weftd` per node: its command line, starting it inside the node's
//! namespace, waiting until it is ready, and reading its status. A lab
//! may run flanneld instead (`flanneld.rs`): its command line and its
//! readiness differ, the rest is shared.
//!
//! An agent runs in its node's network namespace and in a mount namespace
//! of its own where `/run` is the node's (see `runfs`), so that fixed
//! paths such as `/run/flannel/wgkey` are per node.
//!
//! An agent is started in a process group of its own so that it outlives
//! the `weft lab up` that started it and ignores the terminal's Ctrl-C; its
//! output goes to the node's `weftd.log`, which is appended to (a restart
//! keeps the earlier run's lines) and quoted when it fails.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use weft_core::status::StatusView;

use crate::LabError;
use crate::container;
use crate::error::IoContext as _;
use crate::http;
use crate::names::NodePaths;
use crate::netns::in_netns;
use crate::process::{self, Expected};
use crate::runfs;
use crate::state::{LabState, NodeRecord, StoreState};

/// The agent's program name.
pub const WEFTD: &str = "weftd";
/// Leases lapse a minute after their agent dies: a lab should notice a
/// vanished node quickly (flanneld's 24 h suits clusters, not labs).
const LEASE_TTL_SECS: u32 = 60;
const LOG_TAIL_LINES: usize = 25;

/// What an agent's `/v1/status` says: the agent's own view (weft-core's
/// shared type, so the lab reads exactly what weftd serves), with the
/// node's subnets parsed for convenience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    pub ready: bool,
    /// The node's own leased subnets.
    pub subnets: Vec<IpNet>,
    /// Everything the agent reported: peers, skipped peers, desired kernel
    /// state.
    pub view: StatusView,
}

impl AgentStatus {
    /// Whether the agent accepted a peer holding `subnet`.
    pub fn has_peer_with(&self, subnet: IpNet) -> bool {
        let wanted = subnet.to_string();
        self.view.peers.iter().any(|p| p.subnets.contains(&wanted))
    }
}

/// Asks the agent behind `paths.status_socket` for its status.
pub fn status(paths: &NodePaths) -> Result<AgentStatus, String> {
    let response = http::get(&paths.status_socket, "/v1/status", Duration::from_secs(2))?;
    if response.status != 200 {
        return Err(format!(
            "the status socket answered HTTP {}",
            response.status
        ));
    }
    parse_status(&response.body)
}

pub(crate) fn parse_status(body: &[u8]) -> Result<AgentStatus, String> {
    let view: StatusView = serde_json::from_slice(body)
        .map_err(|e| format!("the status is not the expected JSON: {e}"))?;
    let subnets = match &view.lease {
        Some(lease) => lease
            .subnets
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("the agent reports a bad subnet {s:?}"))
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(AgentStatus {
        ready: view.ready,
        subnets,
        view,
    })
}

/// The agent's program name in `/proc`: `weftd`, or the file name of the
/// lab's flanneld.
pub fn program(state: &LabState) -> String {
    state
        .flanneld
        .as_deref()
        .map_or_else(|| WEFTD.to_owned(), crate::flanneld::program)
}

/// How to recognise this node's agent in `/proc`: `program` (see
/// [`program`]) with an argument under this node's directory.
pub fn expected<'a>(program: &'a str, node_dir_marker: &'a str) -> Expected<'a> {
    Expected {
        program,
        marker: node_dir_marker,
    }
}

/// `<node dir>/`, the marker of [`expected`].
pub fn node_marker(node: &NodeRecord) -> String {
    format!("{}/", node.dir.display())
}

/// The agent's command line, as `weft lab` documents it; flanneld's (its
/// flags only) when the lab runs flanneld.
pub fn command(state: &LabState, paths: &NodePaths) -> Result<Command, LabError> {
    let record = state.nodes.iter().find(|n| n.dir == paths.dir);
    let mut cmd = match &state.flanneld {
        Some(flanneld) => crate::flanneld::command(state, paths, flanneld)?,
        None => weftd_command(state, paths),
    };
    cmd.args(&state.agent_args)
        .args(record.map(|n| n.extra_args.as_slice()).unwrap_or_default())
        .envs(
            record
                .map(|n| n.extra_env.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| (k, v)),
        )
        .current_dir(&paths.dir);
    // A FLANNELD_* variable in the caller's environment would silently
    // change every agent (weftd and flanneld read them as flags).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FLANNELD_") {
            cmd.env_remove(name);
        }
    }
    Ok(cmd)
}

/// weftd's own part of [`command`]: the flags it shares with flanneld,
/// then weft's own.
fn weftd_command(state: &LabState, paths: &NodePaths) -> Command {
    let mut cmd = Command::new(state.bin_dir.join(WEFTD));
    if let StoreState::Local {
        path,
        net_conf_path,
    } = &state.store
    {
        cmd.arg(format!("--local-store={}", path.display()))
            .arg(format!("--net-config-path={}", net_conf_path.display()));
    }
    flanneld_flags(&mut cmd, state, paths);
    cmd.arg(format!("--status-socket={}", paths.status_socket.display()))
        .arg(format!("--subnet-lease-ttl={LEASE_TTL_SECS}"))
        .arg("--healthz-port=0");
    cmd
}

/// The flags flanneld has too: the subnet file, the etcd or Kubernetes
/// store, and a cloud node's public address. `false` for a lab on the
/// local store, which is weft's own: no flanneld flag names it.
pub(crate) fn flanneld_flags(cmd: &mut Command, state: &LabState, paths: &NodePaths) -> bool {
    cmd.arg(format!("--subnet-file={}", paths.subnet_env.display()));
    let known = match &state.store {
        StoreState::Local { .. } => false,
        StoreState::Etcd { endpoint, .. } => {
            cmd.arg(format!("--etcd-endpoints={endpoint}"));
            true
        }
        StoreState::Kube(k) => {
            let node = paths
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            cmd.arg("--kube-subnet-mgr")
                .arg(format!("--kubeconfig-file={}", k.kubeconfig.display()))
                .arg(format!("--net-config-path={}", k.net_conf_path.display()))
                .env("NODE_NAME", node);
            true
        }
    };
    let record = state.nodes.iter().find(|n| n.dir == paths.dir);
    // A node in a cloud: configured as K3s's multicloud guide configures
    // it (--flannel-external-ip with --node-external-ip, and the private
    // NIC): the advertised address is not on any interface of the node.
    if let Some(public) = record.and_then(|n| n.public_ip) {
        cmd.arg(format!("--public-ip={public}"))
            .arg(format!("--iface={}", crate::topology::NODE_IFNAME));
    }
    known
}

/// Starts the agent of `node` in its namespace and writes its pid file.
pub fn start(state: &LabState, node: &NodeRecord, paths: &NodePaths) -> Result<Child, LabError> {
    if let Some(flanneld) = &state.flanneld {
        if !flanneld.is_file() {
            return Err(LabError::Missing(format!(
                "{} (the lab's flanneld) is missing",
                flanneld.display()
            )));
        }
    } else if state.image.is_none() && !state.bin_dir.join(WEFTD).is_file() {
        return Err(LabError::Missing(format!(
            "{} is missing: build the workspace first (`cargo build --workspace`) or pass --bin-dir",
            state.bin_dir.join(WEFTD).display()
        )));
    }
    std::fs::create_dir_all(&paths.dir).ctx(|| format!("cannot create {}", paths.dir.display()))?;
    // A leftover socket from a killed agent would answer nothing; the
    // agent replaces it, but readiness must not see the stale one first.
    let _ = std::fs::remove_file(&paths.status_socket);
    if state.flanneld.is_some() {
        crate::flanneld::before_start(paths)?;
        // No weftd status socket to lead to.
        let _ = std::fs::remove_file(paths.run.join("flannel/weftd.sock"));
    } else {
        link_default_status_socket(paths)?;
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .ctx(|| format!("cannot open {}", paths.log.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    writeln!(
        log,
        "=== weft lab: starting {} on {} (unix time {now}) ===",
        program(state),
        node.name
    )
    .ctx(|| format!("cannot write {}", paths.log.display()))?;
    let err_log = log
        .try_clone()
        .ctx(|| format!("cannot reopen {}", paths.log.display()))?;
    let mut cmd = command(state, paths)?;
    if let Some(image) = &state.image {
        // As a kubelet does: the init containers, then the agent's.
        container::run_init_steps(state, image, paths)?;
        cmd = container::agent_command(state, image, node, paths, &cmd)?;
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .process_group(0);
    let program = cmd.get_program().to_string_lossy().into_owned();
    if state.image.is_some() {
        // podman puts the container in the node's namespaces itself; the
        // pid file gets weftd's pid once it runs (adopt_container_pid).
        return cmd
            .spawn()
            .ctx(|| format!("cannot start {program} (install it: scripts/install-deps.sh)"));
    }
    let child = in_netns(&node.netns, || {
        runfs::enter_private_run(&paths.run)?;
        cmd.spawn()
            .ctx(|| format!("cannot start {program} in network namespace {}", node.netns))
    })?;
    process::write_pid_file(&paths.pid, child.id())?;
    Ok(child)
}

/// For an agent in a container: the child this process holds is `podman
/// run`, so once the agent is ready its weftd (found in `/proc` by the
/// node's marker) becomes the recorded pid. `None` for a native agent,
/// whose pid is already the child's.
pub fn adopt_container_pid(
    state: &LabState,
    node: &NodeRecord,
    paths: &NodePaths,
) -> Result<Option<u32>, LabError> {
    if state.image.is_none() {
        return Ok(None);
    }
    let marker = node_marker(node);
    let program = program(state);
    let Some(pid) = expected(&program, &marker).find_all().into_iter().next() else {
        return Ok(None);
    };
    let pid = pid.unsigned_abs();
    process::write_pid_file(&paths.pid, pid)?;
    Ok(Some(pid))
}

/// Makes `/run/flannel/weftd.sock`, weftd's default status socket, lead
/// to the agent's real one in the node's own `/run`, so that `weft lab exec
/// node1 -- weft status` works as plain `weft status` does on a real node.
/// The link's target is an absolute path under the lab's state directory,
/// which the node's mount namespace sees at the same place.
fn link_default_status_socket(paths: &NodePaths) -> Result<(), LabError> {
    let dir = paths.run.join("flannel");
    std::fs::create_dir_all(&dir).ctx(|| format!("cannot create {}", dir.display()))?;
    let link = dir.join("weftd.sock");
    if std::fs::read_link(&link).ok().as_deref() == Some(paths.status_socket.as_path()) {
        return Ok(());
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&paths.status_socket, &link).ctx(|| {
        format!(
            "cannot link {} to {}",
            link.display(),
            paths.status_socket.display()
        )
    })
}

/// Waits until the agent of `node` is ready: its subnet.env exists and its
/// status socket answers `ready: true` (flanneld: subnet.env exists again,
/// see `flanneld.rs`). Fails early, with the tail of its log, when the
/// agent exits.
pub fn wait_ready(
    state: &LabState,
    node: &NodeRecord,
    paths: &NodePaths,
    child: Option<&mut Child>,
    deadline: Instant,
) -> Result<AgentStatus, LabError> {
    let marker = node_marker(node);
    let program = program(state);
    let who = format!(
        "the agent on {} ({program} in netns {})",
        node.name, node.netns
    );
    let not_ready = |problem: String| LabError::NotReady {
        who: who.clone(),
        problem,
        log: paths.log.clone(),
        tail: process::tail(&paths.log, LOG_TAIL_LINES),
    };
    let mut child = child;
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(exit)) = c.try_wait() {
                return Err(not_ready(format!("exited ({exit}) before becoming ready")));
            }
        } else if let Some(pid) = node.pid.and_then(|p| i32::try_from(p).ok())
            && !expected(&program, &marker).matches(pid)
        {
            return Err(not_ready(format!(
                "(pid {pid}) exited before becoming ready"
            )));
        }
        let last = if state.flanneld.is_some() {
            match crate::flanneld::ready_status(state, paths) {
                Ok(s) => return Ok(s),
                Err(e) => e,
            }
        } else if !paths.subnet_env.exists() {
            format!("{} does not exist yet", paths.subnet_env.display())
        } else {
            match status(paths) {
                Ok(s) if s.ready => return Ok(s),
                Ok(_) => "its status socket says it is not ready".to_owned(),
                Err(e) => e,
            }
        };
        if Instant::now() >= deadline {
            return Err(not_ready(format!("did not become ready in time: {last}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_of_weftd() {
        let body = br#"{"version":"0.1.0","store":"local","backend":"none","ready":true,
            "lease":{"subnets":["10.244.3.0/24"],"public_ip":"192.0.2.1","public_ipv6":null,
                     "expires_in_secs":59,"reservation":false},
            "snapshot_revision":7,
            "peers":[{"id":"10.244.4.0-24","subnets":["10.244.4.0/24"],"public_ip":"192.0.2.2",
                      "public_ipv6":null,"backend_type":"none"}],
            "skipped":[],"desired":null}"#;
        let s = parse_status(body).unwrap();
        assert!(s.ready);
        assert_eq!(s.subnets, vec!["10.244.3.0/24".parse::<IpNet>().unwrap()]);
        assert!(s.has_peer_with("10.244.4.0/24".parse().unwrap()));
        assert!(!s.has_peer_with("10.244.5.0/24".parse().unwrap()));
        assert_eq!(s.view.peers[0].public_ip.as_deref(), Some("192.0.2.2"));
        assert!(parse_status(b"nope").is_err());
    }
}
