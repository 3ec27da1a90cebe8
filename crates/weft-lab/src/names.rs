//! Names and paths of everything a lab makes.
//!
//! Why one module: `down` must find a crashed lab's leftovers from its name
//! alone (lab.json may be missing), and two labs with different names must
//! never touch each other's objects. Both follow from deriving every name
//! from the lab name in exactly one place, and from recognising a
//! namespace as a lab's only by an exact pattern (`<lab>-ul`,
//! `<lab>-store`, `<lab>-node<i>`, `<lab>-node<i>-pod<j>`), never by prefix:
//! with a prefix match, `down --name a` would also remove lab `a-node1`.
//!
//! Devices need no lab name: every lab device lives in a namespace of that
//! lab (the veths are created inside the underlay namespace, never in the
//! root namespace), so two labs' `br0` or `eth0` cannot collide.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::LabError;

/// Where per-lab state lives: `/run/weft-lab/<name>/`.
pub const STATE_ROOT: &str = "/run/weft-lab";
/// Where named network namespaces are mounted (`ip netns` uses the same).
pub const NETNS_DIR: &str = "/run/netns";
/// The lab's name when none is given.
pub const DEFAULT_NAME: &str = "weft";

/// The underlay subnet's prefix length (192.0.2.0/24, TEST-NET-1).
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// The underlay bridge's address, every node's default gateway.
pub const UNDERLAY_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// etcd's address on the underlay (`--store etcd`).
pub const STORE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
/// An address "outside the cluster" (TEST-NET-2), held by the underlay
/// namespace so masquerade tests can listen there.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The underlay switch, inside `<lab>-ul`.
pub const BRIDGE: &str = "br0";
/// The cluster network every lab's net-conf.json uses.
pub const CLUSTER_NETWORK: &str = "10.244.0.0/16";
/// The IPv6 cluster network (a ULA, as K3s and kind use).
pub const CLUSTER_NETWORK_V6: &str = "fd00:10:244::/56";
/// The IPv6 underlay (2001:db8::/64, the documentation prefix).
pub const UNDERLAY_V6_PREFIX_LEN: u8 = 64;
pub const UNDERLAY_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
pub const STORE_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfa);
/// An IPv6 address "outside the cluster", held by the underlay namespace.
pub const OUTSIDE_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

/// The most etcd members a lab runs (`up --etcd-members`): member `k`
/// sits at `192.0.2.<240 + k>`, clear of the nodes, .250 and .254.
pub const MAX_ETCD_MEMBERS: u32 = 7;

/// Node addresses are `192.0.2.<i>`; .250 and .254 are taken, so stay well below.
pub const MAX_NODES: u32 = 200;
/// The most clouds a lab has (`up --clouds`): cloud `c`'s router sits at
/// `192.0.2.<230 + c>` on the internet segment, clear of the nodes' public
/// addresses, the etcd members (.241–.247), .250 and .254.
pub const MAX_CLOUDS: u32 = 9;
/// host-local hands out at most 253 addresses of a /24; keep a lab readable.
pub const MAX_PODS_PER_NODE: u32 = 50;
const MAX_NAME_LEN: usize = 32;

/// A validated lab name: 1–32 characters of `a-z`, `0-9` and `-`, starting
/// with a letter or digit and not ending with `-`.
///
/// Why so strict: the name becomes part of namespace names, directory
/// names and process arguments; nothing in it may be a path separator, a
/// shell metacharacter or an option-looking string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabName(String);

impl LabName {
    pub fn new(name: &str) -> Result<LabName, LabError> {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !ok_chars
            || name.starts_with('-')
            || name.ends_with('-')
        {
            return Err(LabError::Invalid(format!(
                "lab name {name:?} is not usable: use 1 to {MAX_NAME_LEN} characters of a-z, 0-9 \
                 and '-', not starting or ending with '-' (for example \"weft\" or \"test-2\")"
            )));
        }
        Ok(LabName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `--name X` as the user would type it, or nothing for the default
    /// name: used in hints ("run `weft lab down{flag}`").
    pub fn flag(&self) -> String {
        if self.0 == DEFAULT_NAME {
            String::new()
        } else {
            format!(" --name {}", self.0)
        }
    }

    pub fn underlay_netns(&self) -> String {
        format!("{}-ul", self.0)
    }

    pub fn store_netns(&self) -> String {
        format!("{}-store", self.0)
    }

    /// The namespace of a node or a pod (`node1`, `node1-pod2`).
    pub fn netns_of(&self, node_or_pod: &str) -> String {
        format!("{}-{node_or_pod}", self.0)
    }

    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(STATE_ROOT).join(&self.0)
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("lab.json")
    }

    /// A string that appears in the arguments of every process this lab
    /// starts (agents, etcd) and of no other lab's: its state directory
    /// with a trailing slash, so lab `a` never matches lab `ab`.
    pub fn process_marker(&self) -> String {
        format!("{STATE_ROOT}/{}/", self.0)
    }

    pub fn node_paths(&self, node: &str) -> NodePaths {
        NodePaths::new(self.state_dir().join(node))
    }

    /// What a namespace name means for this lab, if it is one of its own.
    pub fn classify(&self, netns: &str) -> Option<NetnsRole> {
        let rest = netns.strip_prefix(self.0.as_str())?.strip_prefix('-')?;
        match rest {
            "ul" => Some(NetnsRole::Underlay),
            "store" => Some(NetnsRole::Store),
            _ if parse_etcd_member(rest).is_some() => Some(NetnsRole::Store),
            _ if parse_cloud_name(rest).is_some() => parse_cloud_name(rest).map(NetnsRole::Cloud),
            _ => {
                if let Some(i) = parse_node_name(rest) {
                    Some(NetnsRole::Node(i))
                } else {
                    parse_pod_name(rest).map(|(i, j)| NetnsRole::Pod(i, j))
                }
            }
        }
    }
}

impl TryFrom<String> for LabName {
    type Error = LabError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        LabName::new(&s)
    }
}

impl From<LabName> for String {
    fn from(n: LabName) -> String {
        n.0
    }
}

impl std::fmt::Display for LabName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one of a lab's namespaces is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetnsRole {
    Underlay,
    Store,
    /// A cloud's router (`<lab>-cloud<c>`), with the cloud's private switch.
    Cloud(u32),
    Node(u32),
    Pod(u32, u32),
}

/// Files of one node, all under `/run/weft-lab/<lab>/<node>/`: on a real
/// node they would be `/run/flannel/...` and `/var/lib/cni/...`, which the
/// lab's nodes would otherwise share (they share one filesystem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    pub dir: PathBuf,
    pub subnet_env: PathBuf,
    pub status_socket: PathBuf,
    pub log: PathBuf,
    pub pid: PathBuf,
    /// The CNI plugin's `dataDir` (saved delegate configs).
    pub cni_data: PathBuf,
    /// host-local's `dataDir` (IPAM reservations).
    pub ipam_data: PathBuf,
    /// What the agent sees as `/run` (its `/run/flannel/wgkey`, its
    /// WireGuard sockets).
    pub run: PathBuf,
}

impl NodePaths {
    fn new(dir: PathBuf) -> NodePaths {
        NodePaths {
            subnet_env: dir.join("subnet.env"),
            status_socket: dir.join("weftd.sock"),
            log: dir.join("weftd.log"),
            pid: dir.join("weftd.pid"),
            cni_data: dir.join("cni-flannel"),
            ipam_data: dir.join("ipam"),
            run: dir.join("run"),
            dir,
        }
    }
}

pub fn node_name(i: u32) -> String {
    format!("node{i}")
}

pub fn pod_name(node: u32, pod: u32) -> String {
    format!("node{node}-pod{pod}")
}

/// `node3` → 3. Only canonical numbers (no leading zero, not 0), so that a
/// name maps to exactly one node.
pub fn parse_node_name(s: &str) -> Option<u32> {
    canonical_number(s.strip_prefix("node")?)
}

/// `etcd2` → 2: the members of a multi-member etcd (`up --etcd-members`).
pub fn parse_etcd_member(s: &str) -> Option<u32> {
    canonical_number(s.strip_prefix("etcd")?).filter(|k| *k <= MAX_ETCD_MEMBERS)
}

/// Member `k`'s name (`etcd<k>`): its etcd `--name`, its namespace's
/// suffix and what `weft lab store` commands take.
pub fn etcd_member_name(k: u32) -> String {
    format!("etcd{k}")
}

/// Member `k`'s underlay address, `192.0.2.<240 + k>`.
pub fn etcd_member_ip(k: u32) -> Option<Ipv4Addr> {
    (1..=MAX_ETCD_MEMBERS)
        .contains(&k)
        .then(|| Ipv4Addr::new(192, 0, 2, 240 + k as u8))
}

/// `node3-pod2` → (3, 2).
pub fn parse_pod_name(s: &str) -> Option<(u32, u32)> {
    let (node, pod) = s.split_once("-pod")?;
    Some((parse_node_name(node)?, canonical_number(pod)?))
}

fn canonical_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Node `i`'s underlay address, `192.0.2.<i>`.
/// Node `i`'s IPv6 underlay address, `2001:db8::<i in hex>`.
pub fn node_underlay_ipv6(i: u32) -> Option<Ipv6Addr> {
    (1..=MAX_NODES)
        .contains(&i)
        .then(|| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16))
}

/// Cloud `c`'s router namespace suffix: `cloud<c>`.
pub fn cloud_name(c: u32) -> String {
    format!("cloud{c}")
}

fn parse_cloud_name(s: &str) -> Option<u32> {
    let c: u32 = s.strip_prefix("cloud")?.parse().ok()?;
    (1..=MAX_CLOUDS).contains(&c).then_some(c)
}

/// Which cloud node `i` is in, with `clouds` clouds: round robin, so that
/// node1 and node2 (the pair most tests use) are in different clouds.
pub fn cloud_of(i: u32, clouds: u32) -> u32 {
    (i - 1) % clouds.max(1) + 1
}

/// Cloud `c`'s private subnet is `172.16.<c>.0/24`; this is its router's
/// address there, every node's gateway in that cloud.
pub fn cloud_gateway(c: u32) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(172, 16, u8::try_from(c).ok()?, 254))
}

/// Node `i`'s private address in cloud `c`: `172.16.<c>.<i>`. Its public
/// address (the 1:1 NAT mapping) is its flat-lab address,
/// [`node_underlay_ip`].
pub fn node_private_ip(c: u32, i: u32) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(
        172,
        16,
        u8::try_from(c).ok()?,
        u8::try_from(i)
            .ok()
            .filter(|&i| i >= 1 && u32::from(i) <= MAX_NODES)?,
    ))
}

/// Cloud `c`'s router on the internet segment: `192.0.2.<230 + c>`.
pub fn router_public_ip(c: u32) -> Option<Ipv4Addr> {
    (1..=MAX_CLOUDS)
        .contains(&c)
        .then(|| Ipv4Addr::new(192, 0, 2, 230 + c as u8))
}

pub fn node_underlay_ip(i: u32) -> Option<Ipv4Addr> {
    if (1..=MAX_NODES).contains(&i) {
        Some(Ipv4Addr::new(192, 0, 2, u8::try_from(i).ok()?))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["weft", "a", "test-2", "x1-y2"] {
            assert!(LabName::new(good).is_ok(), "{good}");
        }
        let long = "a".repeat(33);
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a/b",
            "a b",
            "a.b",
            long.as_str(),
        ] {
            assert!(LabName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn classification_is_exact() {
        let lab = LabName::new("a").unwrap();
        assert_eq!(lab.classify("a-ul"), Some(NetnsRole::Underlay));
        assert_eq!(lab.classify("a-store"), Some(NetnsRole::Store));
        assert_eq!(lab.classify("a-node12"), Some(NetnsRole::Node(12)));
        assert_eq!(lab.classify("a-node1-pod3"), Some(NetnsRole::Pod(1, 3)));
        assert_eq!(lab.classify("a-etcd3"), Some(NetnsRole::Store));
        // Other labs' namespaces, including labs whose name starts with "a-".
        for other in [
            "a-node1-ul",
            "a-node1-node1",
            "a-node1-store",
            "ab-ul",
            "a-node01",
            "a-node0",
            "a-ul-ul",
            "b-ul",
            "a",
            "a-",
            "a-node1-pod",
            "a-etcd0",
            "a-etcd8",
            "a-etcd1-ul",
        ] {
            assert_eq!(lab.classify(other), None, "{other}");
        }
    }

    #[test]
    fn node_and_pod_names_round_trip() {
        assert_eq!(parse_node_name(&node_name(7)), Some(7));
        assert_eq!(parse_pod_name(&pod_name(7, 2)), Some((7, 2)));
        assert_eq!(parse_node_name("node"), None);
        assert_eq!(parse_pod_name("node1"), None);
        assert_eq!(node_underlay_ip(3), Some(Ipv4Addr::new(192, 0, 2, 3)));
        assert_eq!(node_underlay_ip(0), None);
        assert_eq!(cloud_of(1, 2), 1);
        assert_eq!(cloud_of(2, 2), 2);
        assert_eq!(cloud_of(3, 2), 1);
        assert_eq!(node_private_ip(2, 4), Some(Ipv4Addr::new(172, 16, 2, 4)));
        assert_eq!(router_public_ip(1), Some(Ipv4Addr::new(192, 0, 2, 231)));
        assert_eq!(router_public_ip(MAX_CLOUDS + 1), None);
        assert_eq!(node_underlay_ip(MAX_NODES + 1), None);
    }

    #[test]
    fn markers_do_not_overlap() {
        let a = LabName::new("a").unwrap().process_marker();
        let ab = LabName::new("ab").unwrap().process_marker();
        assert!(!ab.contains(&a) && !a.contains(&ab));
        assert_eq!(LabName::new("weft").unwrap().flag(), "");
        assert_eq!(LabName::new("t1").unwrap().flag(), " --name t1");
    }
}
