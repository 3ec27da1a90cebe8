//! `/run/weft-lab/<name>/lab.json`: what a lab consists of.
//!
//! `up` writes it after every stage (so a crash midway still leaves a
//! record of what exists) and `check`, `exec`, `restart` and `down` read
//! it. It is replaced atomically (write a temporary file, rename), so a
//! concurrent reader never sees half a file. `down` does not depend on it:
//! it also finds everything from the lab's name alone.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use weft_core::Family;

use crate::LabError;
use crate::names::LabName;
use crate::spec::Backend;

/// The version of lab.json's layout; bumped on incompatible changes.
pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabState {
    pub format: u32,
    pub name: LabName,
    pub backend: Backend,
    /// The cluster network of net-conf.json.
    pub network: IpNet,
    /// The net-conf.json the agents read.
    pub net_conf: String,
    pub store: StoreState,
    /// Where `weftd` and `flannel` were taken from.
    pub bin_dir: PathBuf,
    /// Extra agent arguments given at `up`, reused by `restart`.
    pub agent_args: Vec<String>,
    pub underlay: Underlay,
    #[serde(default)]
    pub ip_family: crate::IpFamily,
    /// How long an agent (or etcd) may take to become ready, at `up` and
    /// at every later start (slow hosts and emulated kernels need more).
    #[serde(default = "default_ready_timeout_secs")]
    pub ready_timeout_secs: u64,
    /// The container image the agents run in (`up --image`); `None` runs
    /// `weftd` from `bin_dir`.
    #[serde(default)]
    pub image: Option<String>,
    pub nodes: Vec<NodeRecord>,
    pub pods: Vec<PodRecord>,
    /// How many clouds the nodes sit in (`up --clouds`); 0: one flat
    /// underlay.
    #[serde(default)]
    pub clouds: u32,
    /// The agents run this flanneld (flanneld's flags only) instead of
    /// weftd: see `flanneld.rs`. `None`: weftd from `bin_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flanneld: Option<PathBuf>,
}

fn default_ready_timeout_secs() -> u64 {
    30
}

/// The underlay switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Underlay {
    pub netns: String,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    /// The "outside world" address held by the underlay namespace.
    pub outside: Ipv4Addr,
}

/// The lease store the agents share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreState {
    Local {
        /// The SQLite file (`--local-store`).
        path: PathBuf,
        /// The net-conf.json file (`--net-config-path`).
        net_conf_path: PathBuf,
    },
    Etcd {
        /// What the agents' `--etcd-endpoints` gets: one URL, or every
        /// member's, comma-separated (`up --etcd-members`).
        endpoint: String,
        /// The single etcd's namespace, or the first member's.
        netns: String,
        address: Ipv4Addr,
        pid: Option<u32>,
        log: PathBuf,
        data_dir: PathBuf,
        /// The members of a multi-member etcd; empty for the single etcd
        /// of `<lab>-store`, which the fields above describe.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        members: Vec<EtcdMember>,
    },
    Kube(KubeStore),
}

/// One member of a multi-member etcd: its own namespace on the underlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// `etcd<k>`: etcd's `--name` and the `weft lab store` argument.
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    /// `http://192.0.2.<240+k>:2379`.
    pub client_url: String,
    /// `http://192.0.2.<240+k>:2380`: on the underlay, so a partition
    /// cuts the member off from its peers as well as from the agents.
    pub peer_url: String,
    /// The underlay bridge's port for it (`e<k>`), which a partition
    /// sets down.
    pub port: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Its pid while it runs (`None` after `store kill`).
    pub pid: Option<u32>,
}

/// The Kubernetes API test server of a `--store kube` lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeStore {
    pub endpoint: String,
    pub netns: String,
    pub kubeconfig: PathBuf,
    pub net_conf_path: PathBuf,
    pub pid: Option<u32>,
    pub log: PathBuf,
}

impl StoreState {
    /// One line for people: "local (/run/…/leases.db)", "etcd (http://…)".
    pub fn describe(&self) -> String {
        match self {
            StoreState::Local { path, .. } => format!("local ({})", path.display()),
            StoreState::Etcd {
                endpoint, netns, ..
            } => format!("etcd ({endpoint}, netns {netns})"),
            StoreState::Kube(k) => format!(
                "Kubernetes API test server ({}, netns {})",
                k.endpoint, k.netns
            ),
        }
    }
}

/// One node: a namespace on the underlay running one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `node<i>`.
    pub name: String,
    pub index: u32,
    pub netns: String,
    /// The address on the node's own NIC (`eth0`): in a lab with clouds,
    /// its private address in its cloud.
    pub underlay_ip: Ipv4Addr,
    /// In a lab with clouds: the cloud, and the public address its router
    /// maps to the node 1:1 (what the agent advertises, `--public-ip`).
    #[serde(default)]
    pub cloud: Option<u32>,
    #[serde(default)]
    pub public_ip: Option<Ipv4Addr>,
    /// Its IPv6 underlay address in IPv6 and dual-stack labs.
    #[serde(default)]
    pub underlay_ipv6: Option<std::net::Ipv6Addr>,
    /// The subnets the agent leased (one per family), as its status
    /// socket reported them when it became ready.
    pub subnets: Vec<IpNet>,
    /// The agent's pid; `None` while it is not running.
    pub pid: Option<u32>,
    /// The node's files (`/run/weft-lab/<lab>/<node>/`).
    pub dir: PathBuf,
    /// Flags for this node's agent only, after the lab's (the last of a
    /// repeated flag wins): tests give one node a different config.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Environment variables for this node's agent only (e.g. systemd's
    /// `NOTIFY_SOCKET`, which tests point at a socket they read).
    #[serde(default)]
    pub extra_env: Vec<(String, String)>,
}

impl NodeRecord {
    /// The leased subnet of a family.
    pub fn subnet(&self, family: Family) -> Option<IpNet> {
        self.subnets
            .iter()
            .copied()
            .find(|n| Family::of_net(*n) == family)
    }
}

/// One pod: a namespace wired by the CNI plugin on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// `node<i>-pod<j>`.
    pub name: String,
    pub node: String,
    pub index: u32,
    pub netns: String,
    /// What the CNI result's `ips` gave, one per family.
    pub addresses: Vec<IpNet>,
}

impl PodRecord {
    /// The pod's address of a family.
    pub fn address(&self, family: Family) -> Option<IpAddr> {
        self.addresses
            .iter()
            .find(|n| Family::of_net(**n) == family)
            .map(|n| n.addr())
    }
}

impl LabState {
    /// Reads lab.json of `name`; `Ok(None)` when there is none.
    pub fn load(name: &LabName) -> Result<Option<LabState>, LabError> {
        let path = name.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(format!("cannot read {}", path.display()), e)),
        };
        let bad = |detail: String| LabError::BadState {
            name: name.to_string(),
            path: path.clone(),
            detail,
        };
        let state: LabState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if state.format != STATE_FORMAT {
            return Err(bad(format!(
                "format {} (this weft reads {STATE_FORMAT})",
                state.format
            )));
        }
        if &state.name != name {
            return Err(bad(format!("it describes lab {:?}", state.name.as_str())));
        }
        Ok(Some(state))
    }

    /// Writes lab.json atomically.
    pub fn save(&self) -> Result<(), LabError> {
        let path = self.name.state_file();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| LabError::Invalid(format!("cannot encode the lab state: {e}")))?;
        std::fs::write(&tmp, text + "\n")
            .map_err(|e| LabError::io(format!("cannot write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| LabError::io(format!("cannot replace {}", path.display()), e))
    }

    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn pod(&self, name: &str) -> Option<&PodRecord> {
        self.pods.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_by_family() {
        let pod = PodRecord {
            name: "node1-pod1".into(),
            node: "node1".into(),
            index: 1,
            netns: "t-node1-pod1".into(),
            addresses: vec![
                "10.244.1.2/24".parse().unwrap(),
                "fd00::2/64".parse().unwrap(),
            ],
        };
        assert_eq!(pod.address(Family::V4), Some("10.244.1.2".parse().unwrap()));
        assert_eq!(pod.address(Family::V6), Some("fd00::2".parse().unwrap()));
    }

    #[test]
    fn store_state_is_tagged() {
        let s = StoreState::Local {
            path: "/x/leases.db".into(),
            net_conf_path: "/x/net-conf.json".into(),
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "local");
        assert_eq!(serde_json::from_value::<StoreState>(json).unwrap(), s);
    }
}
