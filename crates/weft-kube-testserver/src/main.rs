//! `weft-kube-testserver`: the test API server as a process, for `weft lab`
//! and for trying weftd by hand. See the crate's README.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use ipnet::IpNet;
use weft_kube_testserver::{NodeSpec, ServerOptions, TestServer};

/// A Kubernetes API server for tests: Nodes and Pods only, in memory.
#[derive(Debug, Parser)]
#[command(name = "weft-kube-testserver", version)]
struct Args {
    /// Address to serve the API on (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// kube-controller-manager's --cluster-cidr; repeat (or comma-separate)
    /// for dual-stack, IPv4 first.
    #[arg(long, value_delimiter = ',', default_value = "10.244.0.0/16")]
    cluster_cidr: Vec<IpNet>,
    /// --node-cidr-mask-size-ipv4.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// --node-cidr-mask-size-ipv6.
    #[arg(long, default_value_t = 64)]
    node_cidr_mask_size_ipv6: u8,
    /// Give new nodes a podCIDR at once (--allocate-node-cidrs).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// Require this bearer token on API requests (written to the kubeconfig).
    #[arg(long)]
    token: Option<String>,
    /// Where to write a kubeconfig for this server, once it is listening.
    /// Default: weft-kube-testserver-<port>.kubeconfig in the temp dir.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Register a node at start: NAME or NAME=INTERNAL_IP (repeatable).
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// Create a pod bound to a node: NAMESPACE/NAME=NODE (repeatable), for
    /// agents started with POD_NAME/POD_NAMESPACE.
    #[arg(long = "pod")]
    pods: Vec<String>,
    /// Seconds between BOOKMARK events on idle watches.
    #[arg(long, default_value_t = 60)]
    bookmark_interval: u64,
}

fn node_spec(arg: &str) -> Result<NodeSpec> {
    Ok(match arg.split_once('=') {
        Some((name, ip)) => {
            let ip: IpAddr = ip
                .parse()
                .with_context(|| format!("--node {arg}: {ip:?} is not an IP address"))?;
            NodeSpec::new(name).internal_ip(ip)
        }
        None => NodeSpec::new(arg),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let opts = ServerOptions {
        cluster_cidrs: args.cluster_cidr.clone(),
        node_cidr_mask_v4: args.node_cidr_mask_size,
        node_cidr_mask_v6: args.node_cidr_mask_size_ipv6,
        allocate_node_cidrs: args.allocate_node_cidrs,
        token: args.token.clone(),
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        ..ServerOptions::default()
    };
    let server = TestServer::start(opts, args.listen).await?;
    for n in &args.nodes {
        server
            .add_node(node_spec(n)?)
            .map_err(|e| anyhow::anyhow!("--node {n}: {e}"))?;
    }
    for p in &args.pods {
        let (pod, node) = p
            .split_once('=')
            .with_context(|| format!("--pod {p}: expected NAMESPACE/NAME=NODE"))?;
        let (ns, name) = pod
            .split_once('/')
            .with_context(|| format!("--pod {p}: expected NAMESPACE/NAME=NODE"))?;
        server.add_pod(ns, name, node);
    }
    let path = args.kubeconfig_out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "weft-kube-testserver-{}.kubeconfig",
            server.addr().port()
        ))
    });
    server.write_kubeconfig(&path)?;
    // The one line on stdout: where the kubeconfig is.
    println!("{}", path.display());
    tracing::info!(url = %server.url(), kubeconfig = %path.display(), "serving the Kubernetes API");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
