//! The agents of a running lab: status, start, stop, restart, and the
//! fault injection end-to-end tests need (`kill_agent` with SIGKILL).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Lab;
use crate::LabError;
use crate::agent::{self, AgentStatus};
use crate::process;
use crate::state::NodeRecord;

/// How long a stopping agent gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Lab {
    /// What the agent of `node` reports on its status socket. flanneld has
    /// none: for it, what its subnet.env says (see `flanneld.rs`).
    pub fn agent_status(&self, node: &str) -> Result<AgentStatus, LabError> {
        let record = self.node(node)?;
        if self.state.flanneld.is_some() {
            let paths = self.state.name.node_paths(&record.name);
            return crate::flanneld::ready_status(&self.state, &paths).map_err(|e| {
                LabError::Invalid(format!("the flanneld on {node} is not ready: {e}"))
            });
        }
        agent::status(&self.state.name.node_paths(&record.name)).map_err(|e| {
            LabError::Invalid(format!(
                "cannot read the status of the agent on {node}: {e}"
            ))
        })
    }

    /// Whether the agent of `node` runs.
    pub fn agent_running(&self, node: &str) -> Result<bool, LabError> {
        Ok(self.agent_pid(self.node(node)?).is_some())
    }

    /// Restarts the agent of `node`: SIGTERM, wait, start, wait ready.
    /// A stopped agent is simply started.
    pub fn restart(&mut self, node: &str) -> Result<AgentStatus, LabError> {
        self.stop_agent(node, Signal::SIGTERM)?;
        self.start_agent(node)
    }

    /// Sends `signal` to the agent of `node` and waits until it is gone
    /// (SIGKILL after a grace period if `signal` does not end it). Fault
    /// tests use `SIGKILL`. Fails if no agent runs there.
    pub fn kill_agent(&mut self, node: &str, signal: Signal) -> Result<(), LabError> {
        if self.stop_agent(node, signal)? {
            Ok(())
        } else {
            Err(LabError::Invalid(format!("no agent is running on {node}")))
        }
    }

    /// Makes every agent run `flanneld` (flanneld's flags only; see
    /// `flanneld.rs`) from its next start, or weftd again with `None`: how
    /// the benchmark alternates the two on one lab. Refused while an agent
    /// runs (it is recognised in `/proc` by its program's name).
    pub fn set_flanneld(&mut self, flanneld: Option<&std::path::Path>) -> Result<(), LabError> {
        if let Some(running) = self
            .state
            .nodes
            .iter()
            .find(|n| self.agent_pid(n).is_some())
        {
            return Err(LabError::Invalid(format!(
                "the agent on {} still runs: stop it before switching between weftd and flanneld",
                running.name
            )));
        }
        if let Some(f) = flanneld
            && !f.is_file()
        {
            return Err(LabError::Missing(format!(
                "{} (the flanneld to run) is not a file",
                f.display()
            )));
        }
        if self.state.image.is_some() && flanneld.is_some() {
            return Err(LabError::Invalid(
                "flanneld agents run directly; they do not combine with --image".to_owned(),
            ));
        }
        self.state.flanneld = flanneld.map(std::path::Path::to_path_buf);
        self.state.save()
    }

    /// Sets flags for `node`'s agent alone, used from its next start.
    pub fn set_agent_args(&mut self, node: &str, args: &[&str]) -> Result<(), LabError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.set_node(node, |n| n.extra_args = args.clone())
    }

    /// Sets environment variables for `node`'s agent alone, used from its
    /// next start.
    pub fn set_agent_env(&mut self, node: &str, env: &[(&str, &str)]) -> Result<(), LabError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.set_node(node, |n| n.extra_env = env.clone())
    }

    /// Records the containerised weftd's pid in place of `podman run`'s
    /// (see [`agent::adopt_container_pid`]).
    pub(super) fn adopt_container_pid(&mut self, node: &str) -> Result<(), LabError> {
        let record = self.node(node)?.clone();
        let paths = self.state.name.node_paths(&record.name);
        if let Some(pid) = agent::adopt_container_pid(&self.state, &record, &paths)? {
            self.set_node(node, |n| n.pid = Some(pid))?;
        }
        Ok(())
    }

    /// How long a start may take, as the lab was brought up with.
    fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.state.ready_timeout_secs)
    }

    /// Starts the agent of `node` and waits until it is ready; records its
    /// pid and leased subnets. Fails if one already runs there.
    pub fn start_agent(&mut self, node: &str) -> Result<AgentStatus, LabError> {
        let record = self.node(node)?.clone();
        if let Some(pid) = self.agent_pid(&record) {
            return Err(LabError::Invalid(format!(
                "the agent on {node} already runs (pid {pid})"
            )));
        }
        let paths = self.state.name.node_paths(&record.name);
        let child = agent::start(&self.state, &record, &paths)?;
        self.set_node(node, |n| n.pid = Some(child.id()))?;
        self.children.insert(record.name.clone(), child);
        let deadline = Instant::now() + self.ready_timeout();
        let status = agent::wait_ready(
            &self.state,
            &record,
            &paths,
            self.children.get_mut(&record.name),
            deadline,
        )?;
        self.set_node(node, |n| n.subnets = status.subnets.clone())?;
        self.adopt_container_pid(node)?;
        Ok(status)
    }

    /// Stops the agent of `node` with `signal` (SIGKILL after the grace
    /// period). Returns whether one was running.
    fn stop_agent(&mut self, node: &str, signal: Signal) -> Result<bool, LabError> {
        let record = self.node(node)?.clone();
        let Some(pid) = self.agent_pid(&record) else {
            self.set_node(node, |n| n.pid = None)?;
            return Ok(false);
        };
        if !process::terminate(pid, signal, STOP_GRACE)? {
            return Err(LabError::Invalid(format!(
                "the agent on {node} (pid {pid}) does not exit even after SIGKILL"
            )));
        }
        if let Some(mut child) = self.children.remove(&record.name) {
            let _ = child.wait();
        }
        self.set_node(node, |n| n.pid = None)?;
        Ok(true)
    }

    /// The pid of the agent of `node` if it runs: the recorded pid if it
    /// is really this node's weftd, else one found in `/proc`.
    fn agent_pid(&self, node: &NodeRecord) -> Option<i32> {
        let marker = agent::node_marker(node);
        let program = agent::program(&self.state);
        let expected = agent::expected(&program, &marker);
        let paths = self.state.name.node_paths(&node.name);
        node.pid
            .and_then(|p| i32::try_from(p).ok())
            .into_iter()
            .chain(process::read_pid_file(&paths.pid))
            .find(|p| expected.matches(*p))
            .or_else(|| expected.find_all().into_iter().next())
    }
}

impl Lab {
    /// Kills the lab's etcd with SIGKILL, as a crash would (fault tests).
    /// Its data stays; [`Lab::start_store`] brings it back.
    pub fn stop_store(&mut self) -> Result<(), LabError> {
        let Some(mut child) = self.children.remove(crate::store::ETCD) else {
            return Err(LabError::Invalid(
                "this lab's store is not an etcd this process started".to_owned(),
            ));
        };
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Starts the lab's etcd again after [`Lab::stop_store`] and waits until
    /// it serves.
    pub fn start_store(&mut self) -> Result<(), LabError> {
        let child = crate::store::restart_etcd(&self.state.name, self.ready_timeout())?;
        self.children.insert(crate::store::ETCD.to_owned(), child);
        Ok(())
    }
}
