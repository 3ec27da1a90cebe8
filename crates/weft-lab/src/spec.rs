//! What a lab should look like: [`LabSpec`] and its parts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::LabError;
use crate::names::{
    CLUSTER_NETWORK, CLUSTER_NETWORK_V6, DEFAULT_NAME, LabName, MAX_NODES, MAX_PODS_PER_NODE,
};

/// The dataplane backend every agent of the lab runs (net-conf.json's
/// `Backend.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    #[serde(rename = "vxlan")]
    Vxlan,
    #[serde(rename = "host-gw")]
    HostGw,
    #[serde(rename = "ipip")]
    Ipip,
    #[serde(rename = "wireguard")]
    Wireguard,
    /// IPsec through strongSwan's charon (each agent starts its own in its
    /// node's namespaces); the lab makes up a PSK unless one is given.
    #[serde(rename = "ipsec")]
    Ipsec,
    /// Leases only, no dataplane: pods on different nodes cannot reach
    /// each other.
    #[serde(rename = "none")]
    None,
}

impl Backend {
    pub const ALL: [Backend; 6] = [
        Backend::Vxlan,
        Backend::HostGw,
        Backend::Ipip,
        Backend::Wireguard,
        Backend::Ipsec,
        Backend::None,
    ];

    /// The `Backend.Type` string of net-conf.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::Ipip => "ipip",
            Backend::Wireguard => "wireguard",
            Backend::Ipsec => "ipsec",
            Backend::None => "none",
        }
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown backend {s:?}: use one of vxlan, host-gw, ipip, wireguard, ipsec, none"
                )
            })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which address families the lab runs: the underlay, net-conf.json and
/// the pods all follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    #[default]
    Ipv4,
    Ipv6,
    Dual,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
            IpFamily::Dual => "dual",
        }
    }

    pub fn has_v4(self) -> bool {
        self != IpFamily::Ipv6
    }

    pub fn has_v6(self) -> bool {
        self != IpFamily::Ipv4
    }
}

impl FromStr for IpFamily {
    type Err = String;
    fn from_str(s: &str) -> Result<IpFamily, String> {
        match s {
            "ipv4" => Ok(IpFamily::Ipv4),
            "ipv6" => Ok(IpFamily::Ipv6),
            "dual" => Ok(IpFamily::Dual),
            _ => Err(format!("unknown IP family {s:?}: use ipv4, ipv6 or dual")),
        }
    }
}

/// Where the agents keep their leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file shared by every agent (`--local-store`).
    Local,
    /// A real etcd in its own namespace on the underlay.
    Etcd,
    /// weft's Kubernetes API test server in its own namespace on the
    /// underlay; agents run with `--kube-subnet-mgr`.
    Kube,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Local => "local",
            StoreKind::Etcd => "etcd",
            StoreKind::Kube => "kube",
        }
    }
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<StoreKind, String> {
        match s {
            "local" => Ok(StoreKind::Local),
            "etcd" => Ok(StoreKind::Etcd),
            "kube" => Ok(StoreKind::Kube),
            _ => Err(format!("unknown store {s:?}: use local, etcd or kube")),
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything [`crate::Lab::up`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabSpec {
    pub name: LabName,
    /// Nodes `node1` … `nodeN`.
    pub nodes: u32,
    /// Pods `node<i>-pod1` … per node; 0 makes none.
    pub pods_per_node: u32,
    pub backend: Backend,
    pub store: StoreKind,
    /// IPv4 (the default), IPv6 only, or dual-stack.
    pub ip_family: IpFamily,
    /// Where `weftd` and `flannel` (the CNI plugin) are.
    pub bin_dir: PathBuf,
    /// Extra keys for net-conf.json's `Backend` object (`VNI`,
    /// `DirectRouting`, `MTU` …), for tests of backend options.
    pub backend_options: Map<String, Value>,
    /// Extra top-level keys for net-conf.json (`EnableNFTables` …).
    pub net_conf_options: Map<String, Value>,
    /// Extra arguments for every agent (`--ip-masq` once it is built).
    pub agent_args: Vec<String>,
    /// Extra arguments for one node's agent (by node name, `node2`), after
    /// those for every agent: how a lab mixes, say, kernel and userspace
    /// WireGuard nodes.
    pub node_agent_args: BTreeMap<String, Vec<String>>,
    /// How long each agent (and etcd) gets to become ready.
    pub ready_timeout: Duration,
    /// Run each agent inside this container image (podman and runc, in
    /// the node's namespace, as deploy/base/kube-weft.yml runs it) instead of
    /// running `weftd` from `bin_dir` directly.
    pub image: Option<String>,
    /// How many etcd members `--store etcd` runs (1, the default, is the
    /// single etcd of `<lab>-store`; more form one cluster, each member
    /// in its own namespace `<lab>-etcd<k>`).
    pub etcd_members: u32,
    /// 0: one flat underlay. N: the nodes sit in N private clouds, each
    /// behind a router doing 1:1 NAT to a public address on a shared
    /// "internet" segment (`up --clouds`); agents run with `--public-ip`
    /// and `--iface` as K3s's multicloud guide configures them.
    pub clouds: u32,
    /// Run each agent as this flanneld (or a binary taking flanneld's
    /// command line) with flanneld's flags only, instead of weftd: how the
    /// benchmark measures flannel beside weft. Needs the etcd (or kube)
    /// store; pods still come from `bin_dir`'s CNI plugin, which reads
    /// flanneld's subnet.env as it reads weftd's.
    pub flanneld: Option<PathBuf>,
}

impl LabSpec {
    /// The defaults of `weft lab up`: 3 nodes, vxlan, local store, 1 pod per
    /// node, binaries next to the running executable.
    pub fn new(name: &str) -> Result<LabSpec, LabError> {
        Ok(LabSpec {
            name: LabName::new(name)?,
            nodes: 3,
            pods_per_node: 1,
            backend: Backend::Vxlan,
            store: StoreKind::Local,
            ip_family: IpFamily::Ipv4,
            bin_dir: default_bin_dir()?,
            backend_options: Map::new(),
            net_conf_options: Map::new(),
            agent_args: Vec::new(),
            node_agent_args: BTreeMap::new(),
            ready_timeout: Duration::from_secs(30),
            image: None,
            etcd_members: 1,
            clouds: 0,
            flanneld: None,
        })
    }

    /// [`LabSpec::new`] with the default name `weft`.
    pub fn default_named() -> Result<LabSpec, LabError> {
        LabSpec::new(DEFAULT_NAME)
    }

    pub fn validate(&self) -> Result<(), LabError> {
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(LabError::Invalid(format!(
                "a lab has 1 to {MAX_NODES} nodes, not {}",
                self.nodes
            )));
        }
        if self.pods_per_node > MAX_PODS_PER_NODE {
            return Err(LabError::Invalid(format!(
                "a lab has at most {MAX_PODS_PER_NODE} pods per node, not {}",
                self.pods_per_node
            )));
        }
        if let Some(unknown) = self
            .node_agent_args
            .keys()
            .find(|n| !(1..=self.nodes).any(|i| crate::names::node_name(i) == **n))
        {
            return Err(LabError::Invalid(format!(
                "agent arguments for {unknown}, which is not a node of this lab (node1 … node{})",
                self.nodes
            )));
        }
        crate::store_cluster::validate_members(self.store, self.etcd_members)?;
        self.validate_flanneld()?;
        self.validate_clouds()?;
        if self
            .backend_options
            .keys()
            .any(|k| k.eq_ignore_ascii_case("type"))
        {
            return Err(LabError::Invalid(
                "backend options must not set Type: choose the backend itself instead".to_owned(),
            ));
        }
        Ok(())
    }

    fn validate_flanneld(&self) -> Result<(), LabError> {
        let Some(flanneld) = &self.flanneld else {
            return Ok(());
        };
        if self.store == StoreKind::Local {
            return Err(LabError::Invalid(
                "flanneld has no local store: use the etcd store (`--store etcd`) for flanneld agents"
                    .to_owned(),
            ));
        }
        if self.image.is_some() {
            return Err(LabError::Invalid(
                "flanneld agents run directly; they do not combine with --image".to_owned(),
            ));
        }
        if !flanneld.is_file() {
            return Err(LabError::Missing(format!(
                "{} (the flanneld to run) is not a file",
                flanneld.display()
            )));
        }
        Ok(())
    }

    fn validate_clouds(&self) -> Result<(), LabError> {
        if self.clouds == 0 {
            return Ok(());
        }
        if self.clouds > crate::names::MAX_CLOUDS {
            return Err(LabError::Invalid(format!(
                "a lab has at most {} clouds, not {}",
                crate::names::MAX_CLOUDS,
                self.clouds
            )));
        }
        if self.clouds > self.nodes {
            return Err(LabError::Invalid(format!(
                "{} clouds need at least {} nodes (one per cloud), not {}",
                self.clouds, self.clouds, self.nodes
            )));
        }
        if self.ip_family != crate::IpFamily::Ipv4 {
            return Err(LabError::Invalid(
                "--clouds builds IPv4 1:1 NAT between private and public addresses; \
                 IPv6 clouds route public addresses without NAT: use --ip-family ipv4"
                    .to_owned(),
            ));
        }
        if self.image.is_some() {
            return Err(LabError::Invalid(
                "--clouds runs the agents directly; it does not combine with --image".to_owned(),
            ));
        }
        Ok(())
    }

    /// The net-conf.json every agent reads (from a file or from etcd), in
    /// the key order people write it: `Network`, then `Backend` with `Type`
    /// first (a JSON map would sort the keys).
    pub fn net_conf(&self) -> String {
        let mut backend = format!("{{\"Type\":{}", Value::from(self.backend.as_str()));
        for (key, value) in &self.backend_options {
            backend.push_str(&format!(",{}:{value}", Value::from(key.as_str())));
        }
        if self.backend == Backend::Ipsec
            && !self
                .backend_options
                .keys()
                .any(|k| k.eq_ignore_ascii_case("PSK"))
        {
            backend.push_str(&format!(",\"PSK\":{}", Value::from(lab_psk())));
        }
        backend.push('}');
        let mut extra = String::new();
        for (key, value) in &self.net_conf_options {
            extra.push_str(&format!(",{}:{value}", Value::from(key.as_str())));
        }
        let networks = match self.ip_family {
            IpFamily::Ipv4 => format!("\"Network\":{}", Value::from(CLUSTER_NETWORK)),
            IpFamily::Dual => format!(
                "\"Network\":{},\"EnableIPv6\":true,\"IPv6Network\":{}",
                Value::from(CLUSTER_NETWORK),
                Value::from(CLUSTER_NETWORK_V6)
            ),
            IpFamily::Ipv6 => format!(
                "\"EnableIPv4\":false,\"EnableIPv6\":true,\"IPv6Network\":{}",
                Value::from(CLUSTER_NETWORK_V6)
            ),
        };
        format!("{{{networks}{extra},\"Backend\":{backend}}}")
    }
}

/// A fresh 96-character PSK for an ipsec lab (flannel's minimum), from
/// the kernel's random source; a lab is throw-away, so a fixed key is the
/// fallback if that cannot be read.
fn lab_psk() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 48];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => "weft-lab-psk-".repeat(8),
    }
}

/// The directory of the running executable, where cargo puts `weft`,
/// `weftd` and `flannel` side by side. A test binary lives one level
/// deeper, in `deps/`, so that level is skipped.
pub fn default_bin_dir() -> Result<PathBuf, LabError> {
    let exe = std::env::current_exe()
        .map_err(|e| LabError::io("cannot find the running executable", e))?;
    let dir = exe
        .parent()
        .ok_or_else(|| LabError::Invalid(format!("{} has no parent directory", exe.display())))?;
    if dir.file_name().is_some_and(|n| n == "deps")
        && let Some(up) = dir.parent()
    {
        return Ok(up.to_path_buf());
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
            assert_eq!(
                serde_json::to_string(&b).unwrap(),
                format!("\"{}\"", b.as_str())
            );
        }
        assert!("udp".parse::<Backend>().is_err());
        assert_eq!("etcd".parse::<StoreKind>().unwrap(), StoreKind::Etcd);
    }

    #[test]
    fn net_conf_is_exact() {
        let mut spec = LabSpec::new("t").unwrap();
        spec.backend = Backend::None;
        assert_eq!(
            spec.net_conf(),
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"none"}}"#
        );
        spec.backend = Backend::Vxlan;
        spec.backend_options.insert("VNI".into(), Value::from(4096));
        spec.backend_options
            .insert("DirectRouting".into(), Value::from(true));
        assert_eq!(
            spec.net_conf(),
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true,"VNI":4096}}"#
        );
        let parsed: Value = serde_json::from_str(&spec.net_conf()).unwrap();
        assert_eq!(parsed["Backend"]["VNI"], 4096);
    }

    #[test]
    fn limits_are_checked() {
        let mut spec = LabSpec::new("t").unwrap();
        assert!(spec.validate().is_ok());
        spec.nodes = 0;
        assert!(spec.validate().is_err());
        spec.nodes = 2;
        spec.pods_per_node = 1000;
        assert!(spec.validate().is_err());
        spec.pods_per_node = 1;
        spec.backend_options
            .insert("type".into(), Value::from("udp"));
        assert!(spec.validate().is_err());
    }
}
