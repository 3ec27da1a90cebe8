//! How a test server behaves.

use std::time::Duration;

use ipnet::IpNet;

/// Server settings. `Default` is a single-stack 10.244.0.0/16 cluster whose
/// controller-manager allocates /24 podCIDRs, without authentication.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `kube-controller-manager --cluster-cidr` (one per family).
    pub cluster_cidrs: Vec<IpNet>,
    /// `--node-cidr-mask-size-ipv4` (default 24).
    pub node_cidr_mask_v4: u8,
    /// `--node-cidr-mask-size-ipv6` (default 64).
    pub node_cidr_mask_v6: u8,
    /// `--allocate-node-cidrs`: give every new node a podCIDR at once.
    pub allocate_node_cidrs: bool,
    /// A bearer token every API request must carry; `None` accepts all.
    pub token: Option<String>,
    /// The user named in 403 messages (the agent's service account).
    pub user: String,
    /// How often an idle watch with `allowWatchBookmarks=true` gets a
    /// BOOKMARK (the real server: about once a minute).
    pub bookmark_interval: Duration,
    /// Longest a watch stays open, whatever `timeoutSeconds` asks (the real
    /// server closes watches after `--min-request-timeout`, 30–60 min).
    pub max_watch_timeout: Duration,
    /// Answer a watch from a compacted resourceVersion with HTTP 410 rather
    /// than with a 200 carrying one ERROR event (both happen on real
    /// servers: the first from storage, the second from the watch cache).
    pub gone_as_http_status: bool,
    /// Watch events kept for resuming; older ones are compacted away.
    pub history_limit: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            cluster_cidrs: vec![IpNet::V4(ipnet::Ipv4Net::new_assert(
                std::net::Ipv4Addr::new(10, 244, 0, 0),
                16,
            ))],
            node_cidr_mask_v4: 24,
            node_cidr_mask_v6: 64,
            allocate_node_cidrs: true,
            token: None,
            user: "system:serviceaccount:kube-flannel:flannel".into(),
            bookmark_interval: Duration::from_secs(60),
            max_watch_timeout: Duration::from_secs(1800),
            gone_as_http_status: false,
            history_limit: 10_000,
        }
    }
}
