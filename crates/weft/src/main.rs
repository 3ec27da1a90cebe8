//! `weft`, the operator's command-line tool.
//!
//! It inspects and checks; it never changes what the agent (`weftd`) owns.
//! Its first command, `weft config validate`, runs a net-conf.json through
//! exactly the parser and validation the agent uses, so a config can be
//! checked on a laptop or in CI before it reaches a cluster's ConfigMap.

mod check;
mod config;
mod lab;
mod out;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// weft: a flannel-compatible overlay network for Kubernetes.
///
/// This is the operator's tool; the node agent is `weftd`.
#[derive(Debug, Parser)]
#[command(name = "weft", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with the cluster's network configuration (net-conf.json).
    ///
    /// net-conf.json is the one cluster-wide file flannel and weft read: the
    /// `net-conf.json` key of the `kube-flannel-cfg` ConfigMap in Kubernetes
    /// mode, or `<prefix>/config` in etcd. These commands only read it;
    /// they change nothing on the node or in the cluster.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Preflight a node: kernel features, sysctls, the external interface
    /// and its MTU, the backend's UDP ports and firewall rules, the store.
    ///
    /// Every finding is ok, warn or fail, with what was seen and the exact
    /// fix. Run it on a node before installing weft and whenever the overlay
    /// misbehaves. It changes nothing: kernel features are probed inside a
    /// throwaway network namespace. Exit status 1 when a check fails.
    Check {
        /// The net-conf.json weftd uses (checks then match its backend,
        /// families and MTU).
        #[arg(long, value_name = "FILE")]
        net_config: Option<PathBuf>,
        /// etcd endpoints to test (comma-separated), as weftd's flag.
        #[arg(
            long,
            value_name = "URLS",
            value_delimiter = ',',
            env = "FLANNELD_ETCD_ENDPOINTS"
        )]
        etcd_endpoints: Vec<String>,
        /// etcd key prefix, as weftd's flag.
        #[arg(
            long,
            default_value = "/coreos.com/network",
            env = "FLANNELD_ETCD_PREFIX"
        )]
        etcd_prefix: String,
        /// CA bundle to verify etcd's certificate, as weftd's flag.
        #[arg(long, value_name = "FILE", env = "FLANNELD_ETCD_CAFILE")]
        etcd_cafile: Option<PathBuf>,
        /// Client certificate for etcd, as weftd's flag.
        #[arg(long, value_name = "FILE", env = "FLANNELD_ETCD_CERTFILE")]
        etcd_certfile: Option<PathBuf>,
        /// Client key for etcd, as weftd's flag.
        #[arg(long, value_name = "FILE", env = "FLANNELD_ETCD_KEYFILE")]
        etcd_keyfile: Option<PathBuf>,
        /// etcd user name, as weftd's flag.
        #[arg(long, env = "FLANNELD_ETCD_USERNAME")]
        etcd_username: Option<String>,
        /// etcd password; prefer the FLANNELD_ETCD_PASSWORD variable, which
        /// does not show in `ps`.
        #[arg(long, env = "FLANNELD_ETCD_PASSWORD", hide_env_values = true)]
        etcd_password: Option<String>,
        /// Check the Kubernetes store, as weftd's --kube-subnet-mgr: the API
        /// reachable with these credentials and this node's podCIDR assigned.
        #[arg(long, env = "FLANNELD_KUBE_SUBNET_MGR")]
        kube_subnet_mgr: bool,
        /// kubeconfig for the API (default: the in-cluster service account).
        #[arg(long, value_name = "FILE", env = "FLANNELD_KUBECONFIG_FILE")]
        kubeconfig_file: Option<PathBuf>,
        /// The API server's URL, as weftd's flag.
        #[arg(long, value_name = "URL", env = "FLANNELD_KUBE_API_URL")]
        kube_api_url: Option<String>,
        /// This node's name in Kubernetes (default: $NODE_NAME, else the host
        /// name, as the kubelet names nodes).
        #[arg(long, env = "NODE_NAME")]
        node_name: Option<String>,
        /// The external interface weftd is told to use (--iface).
        #[arg(long)]
        iface: Option<String>,
        /// The address weftd advertises (--public-ip), when it is not on the
        /// interface: a node behind NAT. The check then says which backends
        /// can cross it.
        #[arg(long, value_name = "IPV4", env = "FLANNELD_PUBLIC_IP")]
        public_ip: Option<std::net::Ipv4Addr>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What the agent on this node holds next to what the kernel holds.
    ///
    /// Reads weftd's status socket (its lease, every peer, what it wants in
    /// the kernel) and the routes, neighbours, FDB entries and devices of
    /// this network namespace, and flags every difference. Run it on the
    /// node (in a lab: `weft lab exec node1 -- weft status`). Never prints a
    /// key. Exit status 1 when the agent is not ready or the kernel differs.
    Status {
        /// weftd's --status-socket.
        #[arg(long, default_value = "/run/flannel/weftd.sock")]
        socket: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Operate this node's WireGuard backend.
    #[command(subcommand)]
    Wireguard(WireguardCommand),
    /// Publish a new public address for this node without restarting weftd.
    ///
    /// For a node whose advertised address is given (--public-ip, K3s's
    /// --node-external-ip with --flannel-external-ip) and has moved: an
    /// elastic IP re-associated, a NAT mapping changed. Asks the local
    /// weftd (over its status socket) to write ADDR into its lease; peers
    /// follow from there. An address taken from the interface needs none of
    /// this: the agent follows a renumbered interface by itself. Change the
    /// flag (or the node's public-ip-overwrite annotation) too, or the next
    /// start publishes the old address again (docs/multicloud.md).
    PublicIp {
        /// The node's new public address (IPv4 or IPv6).
        addr: std::net::IpAddr,
        /// weftd's --status-socket.
        #[arg(long, default_value = "/run/flannel/weftd.sock")]
        socket: PathBuf,
    },
    /// Run a multi-node weft cluster on this machine (needs root).
    ///
    /// Nodes, pods and an underlay switch are network namespaces; every
    /// node runs a real weftd and pods are made through weft's CNI plugin.
    /// Try weft, look at what each backend programs, or test a change:
    /// `weft lab up`, `weft lab check`, `weft lab down`.
    #[command(subcommand)]
    Lab(lab::LabCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a net-conf.json and print the effective configuration.
    ///
    /// The file is read as flannel reads it (keys in any case), every
    /// default is filled in (SubnetLen, SubnetMin, SubnetMax and their IPv6
    /// twins, the backend and all its options) and the result is printed on
    /// stdout as JSON in net-conf.json's own shape, pre-shared keys
    /// redacted. Unknown keys, which flannel silently ignores, are reported
    /// on stderr as warnings.
    ///
    /// Exit status: 0 when the configuration is valid (warnings or not), 1
    /// when it is not or the file cannot be read; the first line on stderr
    /// is then `error: ` followed by the message flannel itself would give.
    Validate {
        /// Path of the net-conf.json to check; `-` reads standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Validate { file }) => config::validate(&file),
        Command::Check {
            net_config,
            etcd_endpoints,
            etcd_prefix,
            etcd_cafile,
            etcd_certfile,
            etcd_keyfile,
            etcd_username,
            etcd_password,
            kube_subnet_mgr,
            kubeconfig_file,
            kube_api_url,
            node_name,
            iface,
            public_ip,
            json,
        } => check::run(
            &check::CheckInput {
                net_config,
                etcd: weft_store::etcd::EtcdOptions {
                    endpoints: etcd_endpoints,
                    cafile: etcd_cafile,
                    certfile: etcd_certfile,
                    keyfile: etcd_keyfile,
                    username: etcd_username,
                    password: etcd_password,
                },
                etcd_prefix,
                kube: kube_subnet_mgr.then(|| check::KubeCheck {
                    kubeconfig: kubeconfig_file,
                    api_url: kube_api_url,
                    node: node_name.unwrap_or_else(host_name),
                }),
                iface,
                public_ip,
            },
            json,
        ),
        Command::Status { socket, json } => status::run(&socket, json),
        Command::Wireguard(WireguardCommand::RotateKey { socket }) => rotate_key(&socket),
        Command::PublicIp { addr, socket } => public_ip(addr, &socket),
        Command::Lab(command) => lab::run(command),
    }
}

#[derive(Debug, Subcommand)]
enum WireguardCommand {
    /// Give this node a new WireGuard key without losing a packet.
    ///
    /// Asks the local weftd (over its status socket) to write a new key
    /// file, switch its devices to it and publish the new public key in its
    /// lease; weft peers then move to the new key at once, flannel peers
    /// when they re-read the lease (docs/wireguard.md, "Key rotation").
    /// Prints the new public key, never the private one. `weft status`
    /// shows when the key was made and whether the rotation is still
    /// waiting for peers.
    RotateKey {
        /// weftd's --status-socket.
        #[arg(long, default_value = "/run/flannel/weftd.sock")]
        socket: PathBuf,
    },
}

/// `weft wireguard rotate-key`: one POST to the agent, its answer printed.
fn rotate_key(socket: &std::path::Path) -> ExitCode {
    match ask_agent(socket, "/v1/wireguard/rotate-key", 30, "rotate") {
        Ok(key) => {
            println!("rotated: this node's WireGuard public key is now {key}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `weft public-ip ADDR`: one POST to the agent, its answer printed.
fn public_ip(addr: std::net::IpAddr, socket: &std::path::Path) -> ExitCode {
    let path = format!("/v1/public-ip/{addr}");
    match ask_agent(socket, &path, 10, &format!("publish {addr}")) {
        Ok(published) => {
            println!("published: this node's lease now advertises {published}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// POSTs `path` to the local agent's status socket: its answer, or the
/// exit code after saying why the agent did not `what`.
fn ask_agent(
    socket: &std::path::Path,
    path: &str,
    timeout_secs: u64,
    what: &str,
) -> Result<String, ExitCode> {
    let resp = weft_lab::http::post(socket, path, std::time::Duration::from_secs(timeout_secs))
        .map_err(|e| {
            eprintln!("error: {e}: is weftd running on this node (and are you root)? see --socket");
            ExitCode::from(1)
        })?;
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    if resp.status != 200 {
        eprintln!("error: the agent did not {what}: {body}");
        return Err(ExitCode::from(1));
    }
    Ok(body)
}

/// The kernel's host name, lower-cased as the kubelet names its node.
fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}
