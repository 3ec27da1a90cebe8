//! Bringing a lab up: underlay, store, nodes, agents, pods, in that order,
//! recording each stage in lab.json as it completes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Lab, require_root};
use crate::agent;
use crate::cloud::CloudNode;
use crate::cni;
use crate::names::{self, BRIDGE, CLUSTER_NETWORK, OUTSIDE_IP, UNDERLAY_GATEWAY};
use crate::spec::LabSpec;
use crate::state::{LabState, NodeRecord, STATE_FORMAT, Underlay};
use crate::topology::{self, Host};
use crate::{LabError, store};

impl Lab {
    /// Brings a lab up as `spec` describes; see [`Lab::up_with_progress`].
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        Lab::up_with_progress(spec, &mut |_| {})
    }

    /// Brings a lab up: removes leftovers of a lab of the same name, builds
    /// the underlay, the store and the nodes, starts one agent per node,
    /// waits until every agent is ready, then adds the pods through the
    /// CNI plugin. `progress` hears one line per stage.
    ///
    /// On failure the lab is left as it is, for inspection (logs under
    /// `/run/weft-lab/<name>/`); [`Lab::down_by_name`] removes it, and the
    /// next `up` of the same name does too.
    pub fn up_with_progress(
        spec: &LabSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Lab, LabError> {
        spec.validate()?;
        require_root()?;
        let weftd = spec.bin_dir.join(agent::WEFTD);
        if let Some(image) = &spec.image {
            crate::container::check_image(image)?;
        } else if spec.flanneld.is_none() && !weftd.is_file() {
            return Err(LabError::Missing(format!(
                "{} is missing: build the workspace first (`cargo build --workspace`) or pass --bin-dir",
                weftd.display()
            )));
        }
        if spec.pods_per_node > 0 {
            cni::check_installed(&spec.bin_dir)?;
        }

        let name = &spec.name;
        let leftovers = Lab::down_by_name(name.as_str())?;
        if !leftovers.is_empty() {
            progress(&format!(
                "removed the previous lab {:?} ({} objects)",
                name.as_str(),
                leftovers.count()
            ));
        }
        let dir = name.state_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("cannot create {}", dir.display()), e))?;

        progress(&format!(
            "underlay: netns {} with bridge {BRIDGE}",
            name.underlay_netns()
        ));
        topology::build_underlay(&name.underlay_netns(), spec.ip_family.has_v6())?;

        let net_conf = spec.net_conf();
        let mut children = HashMap::new();
        let store = match spec.store {
            crate::StoreKind::Local => store::prepare_local(name, &net_conf)?,
            crate::StoreKind::Etcd if spec.etcd_members > 1 => {
                progress(&format!(
                    "store: etcd of {} members in netns {}",
                    spec.etcd_members,
                    name.netns_of("etcd<k>")
                ));
                let (state, members) = crate::store_cluster::start(
                    name,
                    &net_conf,
                    spec.etcd_members,
                    spec.ready_timeout,
                )?;
                for (member, child) in members {
                    children.insert(format!("{}:{member}", store::ETCD), child);
                }
                state
            }
            crate::StoreKind::Etcd => {
                progress(&format!("store: etcd in netns {}", name.store_netns()));
                let (state, child) = store::start_etcd(name, &net_conf, spec.ready_timeout)?;
                children.insert(store::ETCD.to_owned(), child);
                state
            }
            crate::StoreKind::Kube => {
                progress(&format!(
                    "store: Kubernetes API test server in netns {}",
                    name.store_netns()
                ));
                let (state, child) = store::start_kube(
                    name,
                    &spec.bin_dir,
                    &net_conf,
                    spec.nodes,
                    spec.ip_family,
                    spec.ready_timeout,
                )?;
                children.insert(store::KUBE_SERVER.to_owned(), child);
                state
            }
        };
        let network = CLUSTER_NETWORK
            .parse()
            .map_err(|e| LabError::Invalid(format!("{CLUSTER_NETWORK}: {e}")))?;
        let mut lab = Lab {
            state: LabState {
                format: STATE_FORMAT,
                name: name.clone(),
                backend: spec.backend,
                network,
                net_conf,
                store,
                bin_dir: spec.bin_dir.clone(),
                image: spec.image.clone(),
                agent_args: agent_args(spec),
                ip_family: spec.ip_family,
                ready_timeout_secs: spec.ready_timeout.as_secs().max(1),
                underlay: Underlay {
                    netns: name.underlay_netns(),
                    bridge: BRIDGE.to_owned(),
                    gateway: UNDERLAY_GATEWAY,
                    outside: OUTSIDE_IP,
                },
                nodes: Vec::new(),
                pods: Vec::new(),
                clouds: spec.clouds,
                flanneld: spec.flanneld.clone(),
            },
            children,
        };
        lab.state.save()?;
        for c in 1..=spec.clouds {
            progress(&format!(
                "cloud {c}: router netns {} doing 1:1 NAT to the internet segment",
                name.netns_of(&names::cloud_name(c))
            ));
            lab.build_cloud(c, spec.nodes)?;
        }

        for i in 1..=spec.nodes {
            let node = names::node_name(i);
            let args = spec.node_agent_args.get(&node).cloned().unwrap_or_default();
            lab.build_node(i, args)?;
        }
        progress(&format!(
            "nodes: {} built; starting their agents",
            spec.nodes
        ));
        lab.start_all_agents(spec.ready_timeout)?;

        if spec.pods_per_node > 0 {
            progress(&format!(
                "pods: {} per node, through the CNI plugin",
                spec.pods_per_node
            ));
        }
        for node in 1..=spec.nodes {
            for _ in 0..spec.pods_per_node {
                lab.add_pod(&names::node_name(node))?;
            }
        }
        Ok(lab)
    }

    /// Cloud `c`'s router, with the NAT of the nodes that will be in it.
    fn build_cloud(&mut self, c: u32, nodes: u32) -> Result<(), LabError> {
        let members: Vec<CloudNode> = (1..=nodes)
            .filter(|&i| names::cloud_of(i, self.state.clouds) == c)
            .map(|i| {
                Ok(CloudNode {
                    private: names::node_private_ip(c, i).ok_or_else(|| out_of_range(i))?,
                    public: names::node_underlay_ip(i).ok_or_else(|| out_of_range(i))?,
                })
            })
            .collect::<Result<_, LabError>>()?;
        crate::cloud::build_cloud(
            &self.state.underlay.netns,
            &self.state.name.netns_of(&names::cloud_name(c)),
            c,
            &members,
        )
    }

    fn build_node(&mut self, i: u32, extra_args: Vec<String>) -> Result<(), LabError> {
        let name = names::node_name(i);
        let netns = self.state.name.netns_of(&name);
        let public = names::node_underlay_ip(i).ok_or_else(|| out_of_range(i))?;
        let v6 = self.state.ip_family.has_v6();
        let address_v6 = if v6 {
            names::node_underlay_ipv6(i)
        } else {
            None
        };
        // On the flat underlay a node's address is its public one; in a
        // cloud it has a private address behind its cloud's router.
        let (cloud, address, switch, gateway) = if self.state.clouds > 0 {
            let c = names::cloud_of(i, self.state.clouds);
            (
                Some(c),
                names::node_private_ip(c, i).ok_or_else(|| out_of_range(i))?,
                self.state.name.netns_of(&names::cloud_name(c)),
                names::cloud_gateway(c).ok_or_else(|| out_of_range(i))?,
            )
        } else {
            (
                None,
                public,
                self.state.underlay.netns.clone(),
                UNDERLAY_GATEWAY,
            )
        };
        topology::create_host_netns(&netns)?;
        topology::plug(
            &switch,
            &Host {
                netns: &netns,
                port: &format!("n{i}"),
                address,
                address_v6,
                gateway: Some(gateway),
            },
        )?;
        topology::enable_forwarding(&netns, v6)?;
        if cloud.is_some() {
            crate::cloud::nic_checksums_on_the_wire(&netns)?;
        }
        let paths = self.state.name.node_paths(&name);
        std::fs::create_dir_all(&paths.dir)
            .map_err(|e| LabError::io(format!("cannot create {}", paths.dir.display()), e))?;
        self.state.nodes.push(NodeRecord {
            name,
            index: i,
            netns,
            underlay_ip: address,
            cloud,
            public_ip: cloud.map(|_| public),
            underlay_ipv6: address_v6,
            subnets: Vec::new(),
            pid: None,
            dir: paths.dir,
            extra_args,
            extra_env: Vec::new(),
        });
        self.state.save()
    }

    /// Starts every agent at once, as nodes of a real cluster boot
    /// together (and as the "30 agents join at once" fault test needs),
    /// then waits for each to become ready.
    fn start_all_agents(&mut self, timeout: Duration) -> Result<(), LabError> {
        let nodes = self.state.nodes.clone();
        for node in &nodes {
            let paths = self.state.name.node_paths(&node.name);
            let child = agent::start(&self.state, node, &paths)?;
            self.set_node(&node.name, |n| n.pid = Some(child.id()))?;
            self.children.insert(node.name.clone(), child);
        }
        let deadline = Instant::now() + timeout;
        for node in &nodes {
            let paths = self.state.name.node_paths(&node.name);
            let record = self.node(&node.name)?.clone();
            let status = agent::wait_ready(
                &self.state,
                &record,
                &paths,
                self.children.get_mut(&node.name),
                deadline,
            )?;
            self.set_node(&node.name, |n| n.subnets = status.subnets.clone())?;
            self.adopt_container_pid(&node.name)?;
        }
        Ok(())
    }
}

/// The agents' extra arguments. An ipsec lab always masquerades
/// (`--ip-masq`, as kube-flannel.yml runs flannel): without it the CNI
/// bridge masquerades pod traffic to other nodes behind the node's
/// address, which no ipsec policy (pod subnet to pod subnet) matches, and
/// it would leave in clear.
fn agent_args(spec: &crate::LabSpec) -> Vec<String> {
    let mut args = spec.agent_args.clone();
    if spec.backend == crate::Backend::Ipsec
        && !args
            .iter()
            .any(|a| a == "--ip-masq" || a.starts_with("--ip-masq="))
    {
        args.push("--ip-masq".into());
    }
    args
}

fn out_of_range(i: u32) -> LabError {
    LabError::Invalid(format!("node index {i} is out of range"))
}
