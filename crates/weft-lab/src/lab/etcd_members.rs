//! A multi-member etcd's faults, for `weft lab store` and the HA tests:
//! kill a member (or the leader), start it again, cut its cable, mend it.

use super::Lab;
use crate::LabError;
use crate::state::{EtcdMember, StoreState};
use crate::store_cluster;

/// The key under which a member's process is kept in [`Lab`]'s children.
fn child_key(member: &str) -> String {
    format!("{}:{member}", crate::store::ETCD)
}

/// One member as `weft lab store status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub client_url: String,
    pub running: bool,
    pub partitioned: bool,
    pub leader: bool,
}

impl Lab {
    /// The members of the lab's multi-member etcd (`up --etcd-members`);
    /// empty for a single etcd or another store.
    pub fn etcd_members(&self) -> &[EtcdMember] {
        match &self.state.store {
            StoreState::Etcd { members, .. } => members,
            _ => &[],
        }
    }

    /// The member that leads now, or `None` during an election or without
    /// quorum.
    pub fn etcd_leader(&self) -> Result<Option<String>, LabError> {
        store_cluster::leader(&self.state.name, self.require_members()?)
    }

    /// Every member: running, partitioned, leading.
    pub fn etcd_member_status(&self) -> Result<Vec<MemberStatus>, LabError> {
        let leader = self.etcd_leader()?;
        self.require_members()?
            .iter()
            .map(|m| {
                Ok(MemberStatus {
                    name: m.name.clone(),
                    client_url: m.client_url.clone(),
                    running: store_cluster::is_running(&self.state.name, m),
                    partitioned: store_cluster::is_partitioned(&self.state.name, m)?,
                    leader: leader.as_deref() == Some(m.name.as_str()),
                })
            })
            .collect()
    }

    /// SIGKILLs one member; false if it was not running.
    pub fn kill_etcd_member(&mut self, member: &str) -> Result<bool, LabError> {
        self.require_members()?;
        let name = self.state.name.clone();
        let killed = self.with_members(|members| {
            store_cluster::kill(&name, store_cluster::find_mut(members, member)?)
        })?;
        if let Some(mut child) = self.children.remove(&child_key(member)) {
            let _ = child.wait();
        }
        Ok(killed)
    }

    /// SIGKILLs the member that leads now and returns its name.
    pub fn kill_etcd_leader(&mut self) -> Result<String, LabError> {
        let leader = self.etcd_leader()?.ok_or_else(|| {
            LabError::Invalid(
                "the etcd cluster has no leader now (an election, or no quorum)".to_owned(),
            )
        })?;
        self.kill_etcd_member(&leader)?;
        Ok(leader)
    }

    /// Starts a killed member again on its data and waits until it serves
    /// (it needs a quorum to rejoin: start enough members for one). False
    /// if it was already running.
    pub fn start_etcd_member(&mut self, member: &str) -> Result<bool, LabError> {
        self.require_members()?;
        let name = self.state.name.clone();
        let timeout = std::time::Duration::from_secs(self.state.ready_timeout_secs.max(1));
        let child =
            self.with_members(|members| store_cluster::restart(&name, members, member, timeout))?;
        Ok(match child {
            Some(child) => {
                self.children.insert(child_key(member), child);
                true
            }
            None => false,
        })
    }

    /// Cuts a member's cable (its underlay port goes down); the process
    /// keeps running.
    pub fn partition_etcd_member(&mut self, member: &str) -> Result<(), LabError> {
        self.set_partitioned(member, true)
    }

    /// Mends a member's cable.
    pub fn heal_etcd_member(&mut self, member: &str) -> Result<(), LabError> {
        self.set_partitioned(member, false)
    }

    fn set_partitioned(&mut self, member: &str, partitioned: bool) -> Result<(), LabError> {
        let name = self.state.name.clone();
        let record = self
            .require_members()?
            .iter()
            .find(|m| m.name == member)
            .cloned();
        let Some(record) = record else {
            // The same "no such member" error as the other commands.
            return self.with_members(|m| store_cluster::find_mut(m, member).map(|_| ()));
        };
        store_cluster::set_partitioned(&name, &record, partitioned)
    }

    fn require_members(&self) -> Result<&[EtcdMember], LabError> {
        let members = self.etcd_members();
        if members.is_empty() {
            return Err(LabError::Invalid(format!(
                "lab {} has no multi-member etcd: bring it up with `weft lab up --store etcd --etcd-members 3`",
                self.state.name
            )));
        }
        Ok(members)
    }

    /// Runs `f` on the member records, then saves lab.json (pids change).
    fn with_members<T>(
        &mut self,
        f: impl FnOnce(&mut Vec<EtcdMember>) -> Result<T, LabError>,
    ) -> Result<T, LabError> {
        let StoreState::Etcd { members, pid, .. } = &mut self.state.store else {
            return Err(LabError::Invalid("this lab's store is not etcd".to_owned()));
        };
        let result = f(members);
        *pid = members.first().and_then(|m| m.pid);
        self.state.save()?;
        result
    }
}
