//! [`Lab`]: a running lab, brought up, inspected, changed and torn down.
//!
//! `up.rs` builds a lab, `agents.rs` starts and stops its agents; this
//! file holds the rest: opening, looking up, exec, check, pods, teardown.

mod agents;
mod etcd_members;
mod renumber;
mod up;

pub use etcd_members::MemberStatus;
pub use renumber::Renumbered;

use std::collections::HashMap;
use std::process::{Child, Command, ExitStatus};

use crate::LabError;
use crate::check::{self, CheckOptions, CheckReport};
use crate::cni::{self, PodCall};
use crate::names::{self, LabName};
use crate::netns::{self, spawn_in};
use crate::state::{LabState, NodeRecord, PodRecord, StoreState};
use crate::teardown::{self, DownReport};
use crate::topology;

/// A lab that exists: its recorded state, plus the processes this very
/// process started (waited for once they stop, so a long-running caller
/// such as a test binary does not collect zombies).
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    children: HashMap<String, Child>,
}

impl Lab {
    /// Opens the lab `name` that an earlier `up` made.
    pub fn open(name: &str) -> Result<Lab, LabError> {
        let name = LabName::new(name)?;
        match LabState::load(&name)? {
            Some(state) => Ok(Lab {
                state,
                children: HashMap::new(),
            }),
            None => Err(LabError::NoLab {
                path: name.state_file(),
                flag: name.flag(),
                name: name.to_string(),
            }),
        }
    }

    pub fn name(&self) -> &LabName {
        &self.state.name
    }

    /// Everything recorded about the lab (what lab.json holds).
    pub fn state(&self) -> &LabState {
        &self.state
    }

    pub fn nodes(&self) -> &[NodeRecord] {
        &self.state.nodes
    }

    pub fn pods(&self) -> &[PodRecord] {
        &self.state.pods
    }

    pub fn node(&self, node: &str) -> Result<&NodeRecord, LabError> {
        self.state
            .node(node)
            .ok_or_else(|| self.unknown("node", node))
    }

    pub fn pod(&self, pod: &str) -> Result<&PodRecord, LabError> {
        self.state.pod(pod).ok_or_else(|| self.unknown("pod", pod))
    }

    /// The network namespace of a node.
    pub fn node_netns(&self, node: &str) -> Result<&str, LabError> {
        Ok(&self.node(node)?.netns)
    }

    /// The namespace of an exec target: a node, a pod, `underlay` or
    /// (with `--store etcd`) `store`, a member (`etcd2`) of a multi-member
    /// etcd, or a cloud's router (`cloud1`) in a lab with clouds.
    pub fn netns_of(&self, target: &str) -> Result<String, LabError> {
        if let Some(node) = self.state.node(target) {
            return Ok(node.netns.clone());
        }
        if let Some(pod) = self.state.pod(target) {
            return Ok(pod.netns.clone());
        }
        if let Some(c) = target
            .strip_prefix("cloud")
            .and_then(|c| c.parse::<u32>().ok())
            .filter(|c| (1..=self.state.clouds).contains(c))
        {
            return Ok(self.state.name.netns_of(&crate::names::cloud_name(c)));
        }
        match (target, &self.state.store) {
            ("underlay", _) => Ok(self.state.underlay.netns.clone()),
            ("store", StoreState::Etcd { netns, .. }) => Ok(netns.clone()),
            ("store", StoreState::Kube(k)) => Ok(k.netns.clone()),
            (member, StoreState::Etcd { members, .. })
                if members.iter().any(|m| m.name == member) =>
            {
                Ok(self.state.name.netns_of(member))
            }
            _ => Err(self.unknown("node, pod, `underlay` or `store`", target)),
        }
    }

    /// Runs `f` on a dedicated thread inside the namespace of `target`.
    pub fn in_netns<T: Send>(
        &self,
        target: &str,
        f: impl FnOnce() -> Result<T, LabError> + Send,
    ) -> Result<T, LabError> {
        netns::in_netns(&self.netns_of(target)?, f)
    }

    /// Runs `argv` inside the namespace of `target` with this process's
    /// stdin, stdout and stderr, and returns its exit status. On a node the
    /// command also sees the node's own `/run`, as the agent does.
    pub fn exec(&self, target: &str, argv: &[String]) -> Result<ExitStatus, LabError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| LabError::Invalid("no command given to run".to_owned()))?;
        let netns = self.netns_of(target)?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        // On a node, see the node's own /run (its subnet.env, WireGuard key
        // and sockets) as its agent does, so `wg show` and friends work.
        let mut child = match self.state.node(target) {
            Some(node) => {
                let run = self.state.name.node_paths(&node.name).run;
                crate::netns::in_netns(&netns, || {
                    crate::runfs::enter_private_run(&run)?;
                    cmd.spawn()
                        .map_err(|e| LabError::io(format!("cannot start {program} on {target}"), e))
                })?
            }
            None => spawn_in(&netns, &mut cmd)?,
        };
        child
            .wait()
            .map_err(|e| LabError::io(format!("cannot wait for {program}"), e))
    }

    /// The pod matrix with default options.
    pub fn check(&self) -> Result<CheckReport, LabError> {
        self.check_with(CheckOptions::default())
    }

    pub fn check_with(&self, options: CheckOptions) -> Result<CheckReport, LabError> {
        check::run(&self.state.pods, options)
    }

    /// Adds one pod to `node` through the CNI plugin (`CNI_COMMAND=ADD`),
    /// named after the next free index there.
    pub fn add_pod(&mut self, node: &str) -> Result<PodRecord, LabError> {
        let record = self.node(node)?.clone();
        let index = self
            .state
            .pods
            .iter()
            .filter(|p| p.node == record.name)
            .map(|p| p.index)
            .max()
            .unwrap_or(0)
            + 1;
        let pod = names::pod_name(record.index, index);
        let pod_netns = self.state.name.netns_of(&pod);
        topology::create_host_netns(&pod_netns)?;
        let paths = self.state.name.node_paths(&record.name);
        let bin_dir = self.cni_bin_dir(&paths);
        let call = PodCall {
            bin_dir: &bin_dir,
            node_netns: &record.netns,
            node_paths: &paths,
            pod: &pod,
            pod_netns: &pod_netns,
        };
        let addresses = match cni::add(&call) {
            Ok(addresses) => addresses,
            Err(e) => {
                let _ = netns::remove_netns(&pod_netns);
                return Err(e);
            }
        };
        let record = PodRecord {
            name: pod,
            node: record.name,
            index,
            netns: pod_netns,
            addresses,
        };
        self.state.pods.push(record.clone());
        self.state.save()?;
        Ok(record)
    }

    /// Removes a pod through the CNI plugin (`CNI_COMMAND=DEL`), then its
    /// namespace.
    pub fn remove_pod(&mut self, pod: &str) -> Result<(), LabError> {
        let record = self.pod(pod)?.clone();
        let node = self.node(&record.node)?.clone();
        let paths = self.state.name.node_paths(&node.name);
        let bin_dir = self.cni_bin_dir(&paths);
        cni::del(&PodCall {
            bin_dir: &bin_dir,
            node_netns: &node.netns,
            node_paths: &paths,
            pod: &record.name,
            pod_netns: &record.netns,
        })?;
        netns::remove_netns(&record.netns)?;
        self.state.pods.retain(|p| p.name != record.name);
        self.state.save()
    }

    /// Removes everything the lab made; see [`Lab::down_by_name`].
    pub fn down(mut self) -> Result<DownReport, LabError> {
        let report = teardown::down(&self.state.name, Some(&self.state));
        for (_, mut child) in self.children.drain() {
            let _ = child.try_wait();
        }
        report
    }

    /// Removes everything lab `name` made (agents, etcd, namespaces,
    /// files), with or without its lab.json. Idempotent.
    pub fn down_by_name(name: &str) -> Result<DownReport, LabError> {
        let name = LabName::new(name)?;
        require_root()?;
        // A damaged lab.json must not prevent the cleanup it would help.
        let state = LabState::load(&name).ok().flatten();
        teardown::down(&name, state.as_ref())
    }

    fn set_node(
        &mut self,
        node: &str,
        change: impl FnOnce(&mut NodeRecord),
    ) -> Result<(), LabError> {
        let record = self
            .state
            .nodes
            .iter_mut()
            .find(|n| n.name == node)
            .ok_or_else(|| LabError::Invalid(format!("no node {node:?}")))?;
        change(record);
        self.state.save()
    }

    /// Where a node's CNI plugin is: in an image lab, the one its init
    /// container installed (as a kubelet would run it); else `bin_dir`.
    fn cni_bin_dir(&self, paths: &names::NodePaths) -> std::path::PathBuf {
        self.state
            .image
            .as_ref()
            .and_then(|_| crate::container::installed_plugin(paths))
            .unwrap_or_else(|| self.state.bin_dir.clone())
    }

    fn unknown(&self, what: &str, name: &str) -> LabError {
        let mut known: Vec<&str> = self.state.nodes.iter().map(|n| n.name.as_str()).collect();
        known.extend(self.state.pods.iter().map(|p| p.name.as_str()));
        LabError::Invalid(format!(
            "lab {} has no {what} {name:?}; it has: {}",
            self.state.name,
            known.join(", ")
        ))
    }
}

/// Labs create namespaces and mounts: only root can.
pub fn require_root() -> Result<(), LabError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::Invalid(
            "weft lab needs root: it creates network namespaces and starts agents (run it with sudo)".to_owned(),
        ))
    }
}
