//! `weft lab …`: a multi-node weft cluster on this machine, made of network
//! namespaces, for trying weft and for its end-to-end tests.
//!
//! The commands are thin: everything is done by the `weft-lab` library,
//! and this module parses arguments, prints, and maps results to exit
//! statuses.

mod print;
mod store;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use weft_lab::{Backend, Lab, LabError, LabSpec, StoreKind, names};

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Bring a lab up: nodes with agents, a lease store, and pods.
    ///
    /// Builds an underlay switch (netns `<name>-ul`, bridge br0,
    /// 192.0.2.254/24), N nodes (`<name>-node1` … with eth0 192.0.2.<i>/24)
    /// each running weftd, a lease store (a shared SQLite file, or a real
    /// etcd at 192.0.2.250 with --store etcd), waits until every agent is
    /// ready, then creates the pods (`node1-pod1` …) through weft's CNI
    /// plugin as a kubelet does. A lab of the same name is removed first.
    /// Needs root; never changes the root network namespace.
    ///
    /// weftd and flannel (the CNI plugin) are taken from --bin-dir, by
    /// default the directory of this weft binary (`cargo build --workspace`
    /// puts them side by side). Files go to /run/weft-lab/<name>/.
    Up(UpArgs),

    /// Check that every pod reaches every other pod (ICMP and TCP).
    ///
    /// Each pod pings every other pod and opens a TCP connection to it,
    /// same-node pairs included, and a matrix is printed. Exit status 0
    /// only when every pair passes. With --json, exactly one JSON object is
    /// printed: {"ok": bool, "pairs": [{"from", "to", "family", "icmp",
    /// "tcp"}]}.
    Check(CheckArgs),

    /// Run a command inside a node's or a pod's network namespace.
    ///
    /// The target is a node (`node1`), a pod (`node1-pod1`), `underlay`
    /// (the switch's namespace) or, with --store etcd, `store`. Standard
    /// input and output are passed through, and weft exits with the
    /// command's status (128 + the signal if it was killed). Example:
    /// `weft lab exec node1 -- ip route`.
    Exec(ExecArgs),

    /// Restart one node's agent (SIGTERM, wait, start, wait until ready).
    ///
    /// The agent keeps its lease and the dataplane it programmed, so pods
    /// keep their addresses and, on a real backend, their traffic.
    Restart(RestartArgs),

    /// Give a node's NIC another address under its running agent.
    ///
    /// As a DHCP lease that changes does: `192.0.2.<i>` becomes
    /// `192.0.2.<i+100>` (a second run moves it back), the new address
    /// added before the old one goes. An agent with no --public-ip
    /// publishes the new address in its lease at once and its peers
    /// follow, with no restart. In a lab with clouds the private address
    /// moves the same way and the router maps a new public address
    /// (an elastic IP moved); the agent keeps its old --public-ip until
    /// `weft public-ip` (docs/multicloud.md). Labs of at most 100 nodes.
    Renumber(RestartArgs),

    /// Rehearse etcd member loss: status, kill, start, partition, heal.
    ///
    /// For labs brought up with `--store etcd --etcd-members N`, whose
    /// members etcd1 … etcdN each run in their own namespace on the
    /// underlay. `weft lab store <command> --help` says what each does.
    Store(store::StoreArgs),

    /// Remove everything a lab made: agents, etcd, namespaces, files.
    ///
    /// Works without the lab's state file (after a crash) and when there
    /// is nothing left to remove, so it is always safe to run.
    Down(NameArg),
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The lab's name; several labs with different names can coexist.
    #[arg(long, default_value = names::DEFAULT_NAME)]
    name: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    name: NameArg,
    /// How many nodes (1 to 200).
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// The backend every agent runs (net-conf.json's Backend.Type).
    #[arg(long, value_enum, default_value_t = BackendArg::Vxlan)]
    backend: BackendArg,
    /// Where leases are kept.
    #[arg(long, value_enum, default_value_t = StoreArg::Local)]
    store: StoreArg,
    /// With --store etcd: how many etcd members (1 to 7). More than one
    /// forms one cluster, each member in its own namespace on the underlay
    /// (`<name>-etcd<k>`, 192.0.2.<240+k>), and every agent is given all
    /// their endpoints in --etcd-endpoints, as an operator configures a
    /// cluster's agents. `weft lab store` then kills, restarts and
    /// partitions members.
    #[arg(long, default_value_t = 1, value_name = "N")]
    etcd_members: u32,
    /// Put the nodes in N private clouds (1 to 9; 0, the default: one flat
    /// underlay). Node i sits in cloud ((i-1) mod N)+1 at 172.16.<cloud>.<i>
    /// behind the cloud's router (netns `<name>-cloud<c>`), which maps it
    /// 1:1 to the public address 192.0.2.<i> on the shared "internet"
    /// segment. No cloud routes another's private addresses. Each agent
    /// runs with --public-ip=<public> --iface=eth0, as K3s's multicloud
    /// guide configures --flannel-external-ip (docs/multicloud.md).
    /// IPv4 only.
    #[arg(long, default_value_t = 0, value_name = "N")]
    clouds: u32,
    /// How many pods on each node (0 to 50).
    #[arg(long, default_value_t = 1)]
    pods_per_node: u32,
    /// Where weftd and flannel are (default: next to this weft binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Address families: the underlay, net-conf.json and pods follow it
    /// (ipv6 keeps an IPv4 underlay beside the IPv6 one).
    #[arg(long, value_enum, default_value_t = FamilyArg::Ipv4)]
    ip_family: FamilyArg,
    /// Masquerade pod traffic leaving the cluster network (weftd
    /// --ip-masq), as kube-flannel.yml does.
    #[arg(long)]
    ip_masq: bool,
    /// Keep the masquerade and forward rules in nftables tables instead of
    /// iptables chains (net-conf.json's "EnableNFTables": true).
    #[arg(long)]
    nftables: bool,
    /// An extra weftd flag for every agent (repeatable), e.g.
    /// --agent-arg=-v=2.
    #[arg(long = "agent-arg", value_name = "FLAG", allow_hyphen_values = true)]
    agent_args: Vec<String>,
    /// Which WireGuard implementation the agents run (weftd
    /// --wireguard-path): `kernel`, `userspace` or `auto` for every node,
    /// or `NODE=PATH` for one node (repeatable), e.g. `--wireguard-path
    /// node2=userspace` mixes a userspace node into a kernel lab.
    #[arg(long = "wireguard-path", value_name = "[NODE=]PATH")]
    wireguard_paths: Vec<String>,
    /// Run each node's agent inside this container image, as
    /// deploy/base/kube-weft.yml runs it on a Kubernetes node, instead of
    /// running weftd from --bin-dir directly.
    ///
    /// Each agent is a podman container (runtime runc) in its node's
    /// network namespace (--network ns:/run/netns/<lab>-<node>), with the
    /// manifest's securityContext (all capabilities dropped but NET_ADMIN
    /// and NET_RAW, no privilege escalation, the default seccomp profile),
    /// its mounts (the node's /run/flannel, /var/run/wireguard and
    /// xtables.lock, /dev/net/tun) and its init containers (which install
    /// the CNI plugin and conflist into the node's directory; the pods are
    /// then made with that plugin). The image's entrypoint, iptables-select,
    /// picks the iptables backend. `weft lab down` removes the containers.
    /// Build the image with scripts/image.sh (localhost/weft:dev); needs
    /// podman and runc (scripts/install-deps.sh).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FamilyArg {
    Ipv4,
    Ipv6,
    Dual,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    Vxlan,
    HostGw,
    Ipip,
    Wireguard,
    Ipsec,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StoreArg {
    /// One SQLite file shared by all agents.
    Local,
    /// A real etcd in its own namespace on the underlay.
    Etcd,
    /// weft's Kubernetes API test server; agents run --kube-subnet-mgr.
    Kube,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    name: NameArg,
    /// Print one JSON object instead of the matrix.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    name: NameArg,
    /// A node (node1), a pod (node1-pod1), `underlay`, or `store`.
    target: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    name: NameArg,
    /// The node (node1 …).
    node: String,
}

pub fn run(command: LabCommand) -> ExitCode {
    let result = weft_lab::require_root().and_then(|()| match command {
        LabCommand::Up(args) => up(args),
        LabCommand::Check(args) => check(&args),
        LabCommand::Exec(args) => exec(&args),
        LabCommand::Restart(args) => restart(&args),
        LabCommand::Renumber(args) => renumber(&args),
        LabCommand::Store(args) => store::run(args),
        LabCommand::Down(args) => down(&args),
    });
    result.unwrap_or_else(|e| {
        say_err(&format!("error: {e}"));
        ExitCode::FAILURE
    })
}

fn up(args: UpArgs) -> Result<ExitCode, LabError> {
    let mut spec = LabSpec::new(&args.name.name)?;
    spec.nodes = args.nodes;
    spec.pods_per_node = args.pods_per_node;
    spec.agent_args = args.agent_args.clone();
    spec.ip_family = match args.ip_family {
        FamilyArg::Ipv4 => weft_lab::IpFamily::Ipv4,
        FamilyArg::Ipv6 => weft_lab::IpFamily::Ipv6,
        FamilyArg::Dual => weft_lab::IpFamily::Dual,
    };
    if args.ip_masq {
        spec.agent_args.push("--ip-masq".to_owned());
    }
    if args.nftables {
        spec.net_conf_options
            .insert("EnableNFTables".into(), serde_json::Value::Bool(true));
    }
    spec.backend = match args.backend {
        BackendArg::Vxlan => Backend::Vxlan,
        BackendArg::HostGw => Backend::HostGw,
        BackendArg::Ipip => Backend::Ipip,
        BackendArg::Wireguard => Backend::Wireguard,
        BackendArg::Ipsec => Backend::Ipsec,
        BackendArg::None => Backend::None,
    };
    spec.store = match args.store {
        StoreArg::Local => StoreKind::Local,
        StoreArg::Etcd => StoreKind::Etcd,
        StoreArg::Kube => StoreKind::Kube,
    };
    if let Some(dir) = args.bin_dir {
        spec.bin_dir = dir;
    }
    for choice in &args.wireguard_paths {
        wireguard_path(&mut spec, choice)?;
    }
    spec.image = args.image.clone();
    spec.etcd_members = args.etcd_members;
    spec.clouds = args.clouds;
    let result = Lab::up_with_progress(&spec, &mut |line| say_err(&format!("weft lab: {line}")));
    match result {
        Ok(lab) => {
            say(&print::up_summary(&lab));
            Ok(ExitCode::SUCCESS)
        }
        // Something was built: say where to look and how to clean up.
        Err(e) if spec.name.state_dir().exists() => {
            let name = &spec.name;
            Err(LabError::Invalid(format!(
                "{e}\n\nthe lab is left as it is for inspection (files in {}); \
                 `weft lab down{}` removes it",
                name.state_dir().display(),
                name.flag()
            )))
        }
        Err(e) => Err(e),
    }
}

/// One `--wireguard-path` value, as agent flags for every node or for one.
fn wireguard_path(spec: &mut LabSpec, choice: &str) -> Result<(), LabError> {
    let (node, path) = match choice.split_once('=') {
        Some((node, path)) => (Some(node), path),
        None => (None, choice),
    };
    if !matches!(path, "auto" | "kernel" | "userspace") {
        return Err(LabError::Invalid(format!(
            "--wireguard-path {choice}: the path is auto, kernel or userspace, not {path:?}"
        )));
    }
    let flag = format!("--wireguard-path={path}");
    match node {
        None => spec.agent_args.push(flag),
        Some(node) => spec
            .node_agent_args
            .entry(node.to_owned())
            .or_default()
            .push(flag),
    }
    Ok(())
}

fn check(args: &CheckArgs) -> Result<ExitCode, LabError> {
    let lab = Lab::open(&args.name.name)?;
    let report = lab.check()?;
    if args.json {
        let json = serde_json::to_string(&report)
            .map_err(|e| LabError::Invalid(format!("cannot encode the report: {e}")))?;
        say(&format!("{json}\n"));
    } else {
        say(&print::check_matrix(&lab, &report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn exec(args: &ExecArgs) -> Result<ExitCode, LabError> {
    use std::os::unix::process::ExitStatusExt as _;
    let lab = Lab::open(&args.name.name)?;
    let status = lab.exec(&args.target, &args.command)?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn restart(args: &RestartArgs) -> Result<ExitCode, LabError> {
    let mut lab = Lab::open(&args.name.name)?;
    let status = lab.restart(&args.node)?;
    let node = lab.node(&args.node)?;
    let subnets: Vec<String> = status.subnets.iter().map(ToString::to_string).collect();
    say(&format!(
        "restarted the agent on {} (pid {}): ready, subnet {}\n",
        node.name,
        node.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
        subnets.join(", ")
    ));
    Ok(ExitCode::SUCCESS)
}

fn renumber(args: &RestartArgs) -> Result<ExitCode, LabError> {
    let mut lab = Lab::open(&args.name.name)?;
    let moved = lab.renumber(&args.node)?;
    match moved.public {
        None => say(&format!(
            "{}: eth0 {} -> {}; its agent keeps running and publishes the new address itself\n",
            args.node, moved.from, moved.to
        )),
        Some(public) => say(&format!(
            "{}: eth0 {} -> {}, public (1:1 NAT) now {public}; its agent keeps running with the old \
             --public-ip: `weft lab exec {} -- weft public-ip {public} --socket <node dir>/weftd.sock` \
             publishes the new one\n",
            args.node, moved.from, moved.to, args.node
        )),
    }
    Ok(ExitCode::SUCCESS)
}

fn down(args: &NameArg) -> Result<ExitCode, LabError> {
    let report = Lab::down_by_name(&args.name)?;
    for warning in &report.warnings {
        say_err(&format!("warning: {warning}"));
    }
    if report.is_empty() {
        say(&format!(
            "no lab named {:?} here: nothing to remove\n",
            args.name
        ));
    } else {
        say(&format!(
            "removed lab {:?}: {} processes, {} namespaces, {}\n",
            args.name,
            report.processes.len(),
            report.namespaces.len(),
            if report.files.is_empty() {
                "no files"
            } else {
                "its files"
            },
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`weft lab up | head`) is not worth a
/// panic, least of all after the work is done.
fn say(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Writes one line to stderr, ignoring a closed pipe (progress lines must
/// never abort a half-built lab).
fn say_err(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
