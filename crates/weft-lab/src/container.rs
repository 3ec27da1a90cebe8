//! Agents in a container image (`weft lab up --image`): each node's weftd
//! runs under podman and runc, in its node's network namespace, the way
//! deploy/base/kube-weft.yml runs it on a Kubernetes node.
//!
//! Why: the DaemonSet's promises (which capabilities suffice, that
//! `/proc/sys` is read-only, that the init containers install the CNI
//! plugin, that iptables-select picks a backend) only hold if something
//! runs them under a real OCI runtime. The settings below are the
//! manifest's; a test (`manifest_and_lab_agree`) reads the manifest and
//! fails when the two drift apart, so the manifest stays the one source
//! of truth.
//!
//! Mapping, per node: `hostNetwork` is `--network ns:/run/netns/<node>`;
//! each hostPath volume is a directory of the node (`run/flannel`,
//! `run/wireguard`, `run/xtables.lock`, `opt-cni-bin`, `cni-net.d`) or the
//! host's `/dev/net/tun`; the ConfigMap is `<lab>/kube-flannel/`. The
//! lab's own state directory is mounted at the same path too, because the
//! agent's flags (store, status socket, subnet file) point there; that also
//! keeps the lab's process marker in weftd's command line, so the usual
//! `/proc` scan finds (and `down` stops) a containerised agent.
//!
//! Every podman call passes a network (`none` or the node's): podman's
//! default network would add a bridge and iptables chains to the root
//! namespace, which a lab never touches.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::LabError;
use crate::error::IoContext as _;
use crate::names::{LabName, NodePaths, STATE_ROOT};
use crate::netns::netns_path;
use crate::state::{LabState, NodeRecord};

/// The program that runs the containers.
pub const PODMAN: &str = "podman";
/// kube-weft.yml's `capabilities.add`, after `drop: ["ALL"]`.
pub const CAPABILITIES: [&str; 2] = ["NET_ADMIN", "NET_RAW"];
/// kube-weft.yml's agent `command`; the lab's weftd flags follow it.
pub const AGENT_COMMAND: [&str; 2] = ["/usr/local/bin/iptables-select", "/usr/local/bin/weftd"];
/// The agent container's `volumeMounts`: (volume, mountPath).
pub const AGENT_MOUNTS: [(&str, &str); 5] = [
    ("run", "/run/flannel"),
    ("flannel-cfg", "/etc/kube-flannel/"),
    ("xtables-lock", "/run/xtables.lock"),
    ("dev-net-tun", "/dev/net/tun"),
    ("wireguard-run", "/var/run/wireguard"),
];

/// One of kube-weft.yml's init containers: `/bin/sh -c SCRIPT` with
/// these mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitStep {
    pub name: &'static str,
    pub script: &'static str,
    pub mounts: &'static [(&'static str, &'static str)],
}

/// kube-weft.yml's `initContainers`, in order.
pub const INIT_STEPS: [InitStep; 2] = [
    InitStep {
        name: "install-cni-plugin",
        script: "cp -f /usr/local/bin/flannel /opt/cni/bin/.flannel.tmp && \
                 mv -f /opt/cni/bin/.flannel.tmp /opt/cni/bin/flannel",
        mounts: &[("cni-plugin", "/opt/cni/bin")],
    },
    InitStep {
        name: "install-cni",
        script: "cp -f /etc/kube-flannel/cni-conf.json /etc/cni/net.d/.10-flannel.conflist.tmp && \
                 mv -f /etc/cni/net.d/.10-flannel.conflist.tmp /etc/cni/net.d/10-flannel.conflist",
        mounts: &[
            ("cni", "/etc/cni/net.d"),
            ("flannel-cfg", "/etc/kube-flannel/"),
        ],
    },
];

/// The label every lab container carries, with the lab's name as value:
/// how `down` finds a crashed lab's containers.
const LABEL: &str = "weft-lab";
/// Where the lab writes podman's settings (no default ulimits, runc).
const CONTAINERS_CONF: &str = "/run/weft-lab/podman-containers.conf";

/// The container of `node`'s agent: `weft-lab-<lab>-<node>`.
pub fn container_name(lab: &LabName, node: &str) -> String {
    format!("{LABEL}-{}-{node}", lab.as_str())
}

/// Where the init container installs the CNI plugin for `node`.
pub fn cni_bin_dir(paths: &NodePaths) -> PathBuf {
    paths.dir.join("opt-cni-bin")
}

/// The host path behind a volume of the manifest, for one node.
fn host_path(lab: &LabName, paths: &NodePaths, volume: &str) -> Result<PathBuf, LabError> {
    Ok(match volume {
        "run" => paths.run.join("flannel"),
        "wireguard-run" => paths.run.join("wireguard"),
        "xtables-lock" => paths.run.join("xtables.lock"),
        "dev-net-tun" => PathBuf::from("/dev/net/tun"),
        "cni-plugin" => cni_bin_dir(paths),
        "cni" => paths.dir.join("cni-net.d"),
        "flannel-cfg" => lab.state_dir().join("kube-flannel"),
        other => {
            return Err(LabError::Invalid(format!(
                "no host path for the manifest's volume {other:?}"
            )));
        }
    })
}

/// Creates what the manifest's hostPath volumes expect on the node
/// (`DirectoryOrCreate`, `FileOrCreate`) and the ConfigMap's files.
fn prepare(state: &LabState, paths: &NodePaths) -> Result<(), LabError> {
    let lab = &state.name;
    for volume in ["run", "wireguard-run", "cni-plugin", "cni"] {
        let dir = host_path(lab, paths, volume)?;
        std::fs::create_dir_all(&dir).ctx(|| format!("cannot create {}", dir.display()))?;
    }
    let lock = host_path(lab, paths, "xtables-lock")?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock)
        .ctx(|| format!("cannot create {}", lock.display()))?;
    let cfg = host_path(lab, paths, "flannel-cfg")?;
    std::fs::create_dir_all(&cfg).ctx(|| format!("cannot create {}", cfg.display()))?;
    let conflist = serde_json::json!({
        "name": "cbr0",
        "cniVersion": "1.0.0",
        "plugins": [serde_json::from_str::<serde_json::Value>(&crate::cni::network_config(paths))
            .map_err(|e| LabError::Invalid(format!("the lab's CNI config is not JSON: {e}")))?],
    });
    for (file, text) in [
        ("net-conf.json", state.net_conf.clone()),
        ("cni-conf.json", conflist.to_string()),
    ] {
        let path = cfg.join(file);
        std::fs::write(&path, text).ctx(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `podman` with the lab's settings: Debian's default ulimits cannot be
/// set in every sandbox ("error setting rlimits") and crun fails on some
/// cgroup layouts, so no default ulimits and runc. A caller's own
/// `CONTAINERS_CONF` wins.
pub fn podman() -> Result<Command, LabError> {
    let mut cmd = Command::new(PODMAN);
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        std::fs::create_dir_all(STATE_ROOT).ctx(|| format!("cannot create {STATE_ROOT}"))?;
        std::fs::write(
            CONTAINERS_CONF,
            "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n\
             events_logger = \"file\"\n",
        )
        .ctx(|| format!("cannot write {CONTAINERS_CONF}"))?;
        cmd.env("CONTAINERS_CONF", CONTAINERS_CONF);
    }
    Ok(cmd)
}

/// Fails, saying what to do, unless podman runs and has `image`.
pub fn check_image(image: &str) -> Result<(), LabError> {
    if !podman_installed() {
        return Err(LabError::Missing(format!(
            "{PODMAN} is missing: --image runs the agents under podman and runc \
             (scripts/install-deps.sh installs them)"
        )));
    }
    let status = podman()?
        .args(["image", "exists", image])
        .stdin(Stdio::null())
        .status()
        .ctx(|| format!("cannot run {PODMAN} image exists"))?;
    if status.success() {
        Ok(())
    } else {
        Err(LabError::Missing(format!(
            "{PODMAN} has no image {image}: build it with scripts/image.sh \
             (localhost/weft:dev from deploy/Dockerfile)"
        )))
    }
}

/// Whether podman is installed (`down` skips containers without it).
pub fn podman_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(PODMAN).is_file()))
}

/// The options every lab container shares: the manifest's
/// securityContext (`drop: ALL`, the added capabilities,
/// `allowPrivilegeEscalation: false`, `seccompProfile: RuntimeDefault`,
/// which is podman's default profile) and runc.
fn common(cmd: &mut Command, lab: &LabName) {
    cmd.args(["run", "--rm", "--pull=never", "--runtime=runc"])
        .arg(format!("--label={LABEL}={}", lab.as_str()))
        .args(["--cap-drop=ALL", "--security-opt=no-new-privileges"])
        .arg(format!("--cap-add={}", CAPABILITIES.join(",")));
}

fn mount_args(
    cmd: &mut Command,
    lab: &LabName,
    paths: &NodePaths,
    mounts: &[(&str, &str)],
) -> Result<(), LabError> {
    for (volume, target) in mounts {
        let source = host_path(lab, paths, volume)?;
        cmd.arg(format!(
            "--volume={}:{}",
            source.display(),
            target.trim_end_matches('/')
        ));
    }
    Ok(())
}

/// Runs the init containers of `node` (CNI plugin, then conflist), as a
/// kubelet does before it starts the agent, and waits for each.
pub fn run_init_steps(state: &LabState, image: &str, paths: &NodePaths) -> Result<(), LabError> {
    prepare(state, paths)?;
    for step in &INIT_STEPS {
        let mut cmd = podman()?;
        common(&mut cmd, &state.name);
        cmd.args(["--network=none", "--read-only", "--entrypoint=/bin/sh"]);
        mount_args(&mut cmd, &state.name, paths, step.mounts)?;
        cmd.args([image, "-c", step.script]).stdin(Stdio::null());
        let output = cmd
            .output()
            .ctx(|| format!("cannot run {PODMAN} (install it: scripts/install-deps.sh)"))?;
        if !output.status.success() {
            return Err(LabError::Invalid(format!(
                "init container {} ({image}) failed ({}): {}",
                step.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// The agent of `node` as a container: `podman run` (attached, so its
/// output is weftd's and its exit is the container's) with the manifest's
/// command, the lab's weftd flags and environment, in the node's network
/// namespace.
pub fn agent_command(
    state: &LabState,
    image: &str,
    node: &NodeRecord,
    paths: &NodePaths,
    native: &Command,
) -> Result<Command, LabError> {
    let lab = &state.name;
    let mut cmd = podman()?;
    common(&mut cmd, lab);
    cmd.arg("--replace")
        .arg(format!("--name={}", container_name(lab, &node.name)))
        .arg(format!(
            "--network=ns:{}",
            netns_path(&node.netns).display()
        ))
        .arg("--log-driver=none")
        .arg(format!("--workdir={}", paths.dir.display()));
    mount_args(&mut cmd, lab, paths, &AGENT_MOUNTS)?;
    let state_dir = lab.state_dir();
    cmd.arg(format!(
        "--volume={}:{}",
        state_dir.display(),
        state_dir.display()
    ));
    for (key, value) in native.get_envs() {
        if let Some(value) = value {
            cmd.arg(format!(
                "--env={}={}",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    cmd.arg(format!("--entrypoint={}", AGENT_COMMAND[0]))
        .arg(image)
        .args(&AGENT_COMMAND[1..])
        .args(native.get_args());
    Ok(cmd)
}

/// Removes every container of lab `name` (a crashed lab's leftovers, or
/// agents whose `--rm` cleanup has not finished). Returns their names.
pub fn remove_all(name: &LabName) -> Result<Vec<String>, LabError> {
    let list = podman()?
        .args(["ps", "--all", "--format={{.Names}}"])
        .arg(format!("--filter=label={LABEL}={}", name.as_str()))
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("cannot run {PODMAN} ps"))?;
    if !list.status.success() {
        return Err(LabError::Invalid(format!(
            "{PODMAN} ps failed: {}",
            String::from_utf8_lossy(&list.stderr).trim()
        )));
    }
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Ok(names);
    }
    let removed = podman()?
        .args(["rm", "--force", "--ignore", "--time=5"])
        .args(&names)
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("cannot run {PODMAN} rm"))?;
    if !removed.status.success() {
        return Err(LabError::Invalid(format!(
            "{PODMAN} rm {} failed: {}",
            names.join(" "),
            String::from_utf8_lossy(&removed.stderr).trim()
        )));
    }
    Ok(names)
}

/// The directory holding the CNI plugin the init container installed on
/// this node, once it is there: pods of an image lab are made with it.
pub fn installed_plugin(paths: &NodePaths) -> Option<PathBuf> {
    let dir = cni_bin_dir(paths);
    dir.join(crate::cni::PLUGIN).is_file().then_some(dir)
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
