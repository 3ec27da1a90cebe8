//! Removing a lab: everything it made, found from its name alone.
//!
//! lab.json helps (it names the CNI plugin's directory) but is not
//! needed: pods, nodes and the rest are found in `/run/netns` by exact name
//! patterns, agents and etcd through their pid files and a `/proc` scan for
//! this lab's marker. So `down` also cleans a lab whose `up` crashed before
//! writing anything, and running it twice is harmless.
//!
//! Order matters: pods are deleted through the CNI plugin first (as a
//! kubelet drains a node), then the processes stop (a namespace lives on
//! while a process is inside it), then the namespaces and files go.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::LabError;
use crate::agent::WEFTD;
use crate::cni::{self, PodCall};
use crate::names::{LabName, NetnsRole, node_name, pod_name};
use crate::netns::{list_netns, netns_exists, remove_netns};
use crate::process::{self, Expected};
use crate::state::LabState;
use crate::store::ETCD;

/// How long agents and etcd get to exit on SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// What `down` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Stopped processes ("weftd pid 123", "etcd pid 456").
    pub processes: Vec<String>,
    /// Removed network namespaces.
    pub namespaces: Vec<String>,
    /// Removed directories (the lab's state directory).
    pub files: Vec<String>,
    /// Steps that failed but did not stop the teardown (a CNI DEL).
    pub warnings: Vec<String>,
}

impl DownReport {
    /// Whether there was nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// How many things were removed.
    pub fn count(&self) -> usize {
        self.processes.len() + self.namespaces.len() + self.files.len()
    }
}

/// Removes everything lab `name` made. `state` is its lab.json, if any.
pub fn down(name: &LabName, state: Option<&LabState>) -> Result<DownReport, LabError> {
    let mut report = DownReport::default();
    let mut namespaces: Vec<(NetnsRole, String)> = list_netns()?
        .into_iter()
        .filter_map(|ns| name.classify(&ns).map(|role| (role, ns)))
        .collect();
    namespaces.sort();

    delete_pods(name, state, &namespaces, &mut report);
    stop_processes(name, state, &mut report)?;
    remove_containers(name, &mut report);

    // Pods first, the underlay last: the reverse of creation.
    for (_, ns) in namespaces.iter().rev() {
        if remove_netns(ns)? {
            report.namespaces.push(ns.clone());
        }
    }
    let dir = name.state_dir();
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => report.files.push(dir.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io(format!("cannot remove {}", dir.display()), e)),
    }
    Ok(report)
}

/// `CNI_COMMAND=DEL` for every pod whose namespace still exists.
fn delete_pods(
    name: &LabName,
    state: Option<&LabState>,
    namespaces: &[(NetnsRole, String)],
    report: &mut DownReport,
) {
    let bin_dir: Option<PathBuf> = state
        .map(|s| s.bin_dir.clone())
        .or_else(|| crate::spec::default_bin_dir().ok());
    let Some(bin_dir) = bin_dir.filter(|d| d.join(cni::PLUGIN).is_file()) else {
        if namespaces
            .iter()
            .any(|(r, _)| matches!(r, NetnsRole::Pod(..)))
        {
            report
                .warnings
                .push("the CNI plugin was not found: pods are removed without CNI DEL".to_owned());
        }
        return;
    };
    for (role, pod_netns) in namespaces {
        let NetnsRole::Pod(i, j) = *role else {
            continue;
        };
        let node = node_name(i);
        let node_netns = name.netns_of(&node);
        if !netns_exists(&node_netns) {
            continue;
        }
        let pod = pod_name(i, j);
        let paths = name.node_paths(&node);
        let call = PodCall {
            bin_dir: &bin_dir,
            node_netns: &node_netns,
            node_paths: &paths,
            pod: &pod,
            pod_netns,
        };
        if let Err(e) = cni::del(&call) {
            report.warnings.push(e.to_string());
        }
    }
}

/// Stops this lab's agents and etcd: SIGTERM to all, then SIGKILL to
/// whatever is left after the grace period. Agents are weftd, or the
/// flanneld lab.json names (`flanneld` when lab.json is gone).
fn stop_processes(
    name: &LabName,
    state: Option<&LabState>,
    report: &mut DownReport,
) -> Result<(), LabError> {
    let marker = name.process_marker();
    let flanneld = state
        .and_then(|s| s.flanneld.as_deref())
        .map_or_else(|| "flanneld".to_owned(), crate::flanneld::program);
    let mut programs = vec![WEFTD, ETCD, crate::store::KUBE_SERVER];
    if !programs.contains(&flanneld.as_str()) {
        programs.push(&flanneld);
    }
    let mut targets: Vec<(i32, &str)> = Vec::new();
    for program in programs {
        let expected = Expected {
            program,
            marker: &marker,
        };
        let mut pids = expected.find_all();
        // A flanneld agent's pid is in the node's weftd.pid too.
        let pid_file = if program == flanneld { WEFTD } else { program };
        pids.extend(
            pid_files(name, pid_file)
                .into_iter()
                .filter(|p| expected.matches(*p)),
        );
        pids.sort_unstable();
        pids.dedup();
        targets.extend(pids.into_iter().map(|p| (p, program)));
    }
    for (pid, _) in &targets {
        process::signal(*pid, Signal::SIGTERM)?;
    }
    for (pid, program) in &targets {
        if !process::terminate(*pid, Signal::SIGTERM, GRACE)? {
            return Err(LabError::Invalid(format!(
                "{program} (pid {pid}) does not exit even after SIGKILL; the lab is left in place"
            )));
        }
        report.processes.push(format!("{program} pid {pid}"));
    }
    stop_orphan_charons(name, report)?;
    Ok(())
}

/// The ipsec backend's charons: each agent stops its own at shutdown, but
/// one whose agent was SIGKILLed (and never restarted to adopt it) lives
/// on. weftd notes its pid in the node's `/run/flannel/charon.weft.pid`;
/// only a live process that is charon is stopped.
fn stop_orphan_charons(name: &LabName, report: &mut DownReport) -> Result<(), LabError> {
    let Ok(entries) = std::fs::read_dir(name.state_dir()) else {
        return Ok(());
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let file = entry.path().join("run/flannel/charon.weft.pid");
        let Some(pid) = process::read_pid_file(&file) else {
            continue;
        };
        let is_charon = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "charon"));
        if is_charon && process::terminate(pid, Signal::SIGTERM, GRACE)? {
            report.processes.push(format!("charon pid {pid}"));
        }
    }
    Ok(())
}

/// Removes the lab's containers (`up --image`) once their agents have
/// stopped: normally `--rm` already did, but a crash can leave them. A
/// host without podman has none; a podman that fails is a warning, so it
/// never blocks removing a lab that did not use it.
fn remove_containers(name: &LabName, report: &mut DownReport) {
    if !crate::container::podman_installed() {
        return;
    }
    match crate::container::remove_all(name) {
        Ok(removed) => report
            .processes
            .extend(removed.into_iter().map(|c| format!("container {c}"))),
        Err(e) => report.warnings.push(e.to_string()),
    }
}

/// The pids in this lab's pid files of `program`.
fn pid_files(name: &LabName, program: &str) -> Vec<i32> {
    let dir = name.state_dir();
    if program == ETCD || program == crate::store::KUBE_SERVER {
        return process::read_pid_file(&dir.join(format!("{program}.pid")))
            .into_iter()
            .collect();
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| process::read_pid_file(&e.path().join(format!("{program}.pid"))))
        .collect()
}
