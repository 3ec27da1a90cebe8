//! The figures of each part of the benchmark. Times are in the unit their
//! field names (`_ms`, `_us`), sizes in KiB or MiB likewise; every
//! [`Summary`] is min / median / max over the part's runs.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// One lab configuration of the data plane part: a backend, possibly with
/// options. Its kebab-case name is the one `--dp-backends` takes, the one
/// in the JSON, and the lab's name (`bench-dp-<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Vxlan,
    /// vxlan with `TxChecksumOffload: true` (the kernel's default kept).
    VxlanCsum,
    Hostgw,
    Ipip,
    /// Userspace WireGuard (the kernel used here has no module).
    Wireguard,
}

impl Variant {
    /// Every variant, in the order of the table.
    pub const ALL: [Variant; 5] = [
        Variant::Vxlan,
        Variant::VxlanCsum,
        Variant::Hostgw,
        Variant::Ipip,
        Variant::Wireguard,
    ];

    /// The name of `--dp-backends`, the JSON and the lab.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Vxlan => "vxlan",
            Variant::VxlanCsum => "vxlan-csum",
            Variant::Hostgw => "hostgw",
            Variant::Ipip => "ipip",
            Variant::Wireguard => "wireguard",
        }
    }

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Vxlan => "vxlan",
            Variant::VxlanCsum => "vxlan with `TxChecksumOffload: true`",
            Variant::Hostgw => "host-gw",
            Variant::Ipip => "ipip",
            Variant::Wireguard => "wireguard (userspace)",
        }
    }

    /// The target ratio of pod → pod to the underlay, where issue 10 sets one.
    pub fn floor(self) -> Option<f64> {
        match self {
            Variant::Vxlan => Some(0.80),
            Variant::Hostgw => Some(0.97),
            Variant::VxlanCsum | Variant::Ipip | Variant::Wireguard => None,
        }
    }
}

/// One figure of a path against its baseline, measured back to back in
/// each run, and the ratio taken run by run (not median over median: a
/// burst of load then weighs on both sides of each ratio alike).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    pub measured: Option<Summary>,
    pub baseline: Option<Summary>,
    pub ratio: Option<Summary>,
}

/// A path against its baseline: iperf3 throughput (Gbit/s) with 1 and 4
/// streams, TCP request/response latency percentiles (µs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathComparison {
    pub tcp_1_gbps: Figure,
    pub tcp_4_gbps: Figure,
    pub rr_p50_us: Figure,
    pub rr_p99_us: Figure,
}

/// pod → pod on one backend against node → node over the underlay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredBackend {
    pub variant: Variant,
    pub pod_vs_underlay: PathComparison,
    /// The same lab with flanneld agents (`--flanneld`, default vxlan
    /// only), measured in the same runs; absent when not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel: Option<FlannelPath>,
}

/// flanneld's pod → pod in a lab of its own beside weft's, each run
/// measuring both labs back to back (order alternating).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlannelPath {
    /// flanneld's pod → pod against its lab's underlay.
    pub pod_vs_underlay: PathComparison,
    /// weft's pod/underlay ratio over flanneld's, run by run, 1 and 4
    /// streams: ≥ 1 when weft's pod path is at least flannel's.
    pub tcp_1_vs_flannel: Option<Summary>,
    pub tcp_4_vs_flannel: Option<Summary>,
}

/// The data plane part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    pub runs: usize,
    /// Seconds per iperf3 test (after one second of slow start).
    pub iperf_secs: u32,
    /// One-byte round trips per request/response sample.
    pub rr_count: usize,
    /// The backends measured, in the order of the table.
    pub backends: Vec<MeasuredBackend>,
    /// Why ipip was not measured: this kernel cannot create its device.
    pub ipip_unsupported: Option<String>,
    /// weft's userspace WireGuard (subject) against wireguard-go
    /// (baseline), node → node; `null` when not measured.
    pub wireguard_go: Option<PathComparison>,
}

/// CPU of a reconcile pass with nothing to change, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassCpu {
    /// A peer lease rewritten with its same value: the store side alone.
    pub store_us: f64,
    /// The reconcile pass itself: plan, kernel dumps, diff.
    pub pass_us: f64,
    /// `pass_us` over K: flat when the pass is linear.
    pub pass_us_per_peer: f64,
    /// Wall time of a pass, from weftd's own histogram.
    pub pass_wall_us: Option<f64>,
    pub triggers: usize,
    /// Passes weftd counted during the triggers.
    pub passes: f64,
}

/// One new lease → its route, one sample per lease, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseLatency {
    pub samples: usize,
    /// The etcd put until a route lookup on the node goes via the new peer.
    pub route_p50_ms: Option<f64>,
    pub route_p99_ms: Option<f64>,
    /// Baseline: the put until an etcd watch in the benchmark hears of it.
    pub watch_p50_ms: Option<f64>,
    pub watch_p99_ms: Option<f64>,
    /// `route_p50_ms - watch_p50_ms`: weft's own share.
    pub own_p50_ms: Option<f64>,
}

/// Everything measured with K synthetic peers (K = 0: the idle agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtK {
    pub k: u32,
    /// Cold start until every route, neighbour and FDB entry is in.
    pub cold_ms: Option<Summary>,
    /// Baseline: the same entries through bare netlink batches.
    pub raw_ms: Option<Summary>,
    /// `cold_ms / raw_ms`, run by run.
    pub cold_ratio: Option<Summary>,
    /// Start until `/readyz` answers 200.
    pub ready_ms: Option<Summary>,
    /// weftd's VmRSS, RssAnon and VmHWM one second after each cold start.
    pub rss_mib: Option<Summary>,
    pub anon_mib: Option<Summary>,
    pub peak_mib: Option<Summary>,
    /// `null` at K = 0.
    pub lease: Option<LeaseLatency>,
    pub cpu: Option<PassCpu>,
}

/// Sizes of the binaries, KiB; `null` when missing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinarySizes {
    pub weftd: Option<f64>,
    pub weft: Option<f64>,
    pub flannel: Option<f64>,
    /// Debian's `bridge` CNI plugin (Go), for scale.
    pub cni_bridge: Option<f64>,
    /// Debian's `wireguard-go` (Go), for scale.
    pub wireguard_go: Option<f64>,
}

/// The control plane at scale, and weftd's footprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub runs: usize,
    /// K = 0 first, then each K in increasing order.
    pub at_k: Vec<AtK>,
    /// `weftd --version` start to exit: what starting the binary costs.
    pub exec_ms: Option<Summary>,
    pub sizes: BinarySizes,
    /// flanneld on the same lab node (`--flanneld`); absent when not
    /// measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel: Option<FlannelScale>,
}

/// flanneld measured beside weftd on the scale lab's node: at K = 0 and
/// each K ≥ 5 000 (a run without one: its largest K), the two agents'
/// cold starts alternating run by run, then each one's new leases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlannelScale {
    pub at_k: Vec<FlannelAtK>,
}

/// flanneld at one K, and weft against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlannelAtK {
    /// flanneld's figures, as weft's (`cold_ratio` against the same bare
    /// netlink baseline of the same runs; `cpu` null: flanneld counts no
    /// passes; `ready_ms`: its own `/readyz`).
    pub flannel: AtK,
    /// weft's cold start over flanneld's, run by run.
    pub cold_vs_flannel: Option<Summary>,
    /// weft's VmRSS over flanneld's, run by run.
    pub rss_vs_flannel: Option<Summary>,
}

/// ADD, DEL or both, per pod.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniOp {
    /// Through weft's plugin, delegating to `bridge`.
    pub plugin_ms: Option<Summary>,
    /// Baseline: `bridge` alone with the plugin's delegate configuration.
    pub bridge_ms: Option<Summary>,
    /// `plugin_ms - bridge_ms`, pod by pod.
    pub own_ms: Option<Summary>,
    /// The median of `own_ms` over the median of `plugin_ms`, in %.
    pub own_share_pct: Option<f64>,
}

/// The CNI part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cni {
    pub pods: usize,
    pub add: CniOp,
    pub del: CniOp,
    pub add_del: CniOp,
    /// The plugin's `VERSION`: start, answer, exit.
    pub version_ms: Option<Summary>,
    /// ADD with a stub delegate, minus the stub alone.
    pub stub_add_ms: Option<Summary>,
    /// The stub alone (/bin/sh printing a result).
    pub stub_alone_ms: Option<Summary>,
}

/// One way of installing N routes (see the routes part's module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    Flannel,
    Reversed,
    OneByOne,
    IpBatch,
    MetricPerRoute,
    Metric64,
    Nexthops,
    Ipv6,
    Delete,
}

impl Shape {
    /// Every shape, in the order of the table (flannel's, the reference, first).
    pub const ALL: [Shape; 9] = [
        Shape::Flannel,
        Shape::Reversed,
        Shape::OneByOne,
        Shape::IpBatch,
        Shape::MetricPerRoute,
        Shape::Metric64,
        Shape::Nexthops,
        Shape::Ipv6,
        Shape::Delete,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Shape::Flannel => "flannel's shape, weft's netlink batches (today)",
            Shape::Reversed => "the same, inserted in reverse order",
            Shape::OneByOne => "the same, one request per round trip",
            Shape::MetricPerRoute => "flannel's shape + a distinct metric per route",
            Shape::Metric64 => "flannel's shape + metric = index mod 64",
            Shape::IpBatch => "flannel's shape through iproute2 (`ip -batch`)",
            Shape::Nexthops => {
                "nexthop objects: `nexthop add id N via … onlink` + `route add … nhid N` (ip -batch)"
            }
            Shape::Ipv6 => "IPv6, flannel-v6's shape (`/64 via <VTEP> onlink`)",
            Shape::Delete => "deleting flannel-shaped routes (weft's batches)",
        }
    }
}

/// One shape at the part's route count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeTime {
    pub shape: Shape,
    pub ms: Option<Summary>,
    /// Its median over flannel's shape's median.
    pub vs_flannel: Option<f64>,
}

/// flannel's shape at one route count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Growth {
    pub routes: u32,
    pub ms: Option<Summary>,
    /// The median per route, µs.
    pub us_per_route: Option<f64>,
}

/// The kernel alone: installing routes by shape, and flannel's shape at
/// growing counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    pub runs: usize,
    /// Routes per shape.
    pub routes: u32,
    pub shapes: Vec<ShapeTime>,
    pub growth: Vec<Growth>,
}

/// New node → its route, over every sample of one weftd, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRoute {
    pub samples: usize,
    /// The node's create until a route lookup on the agent's node goes
    /// via the new peer.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Baseline: the create until the API server answered it.
    pub api_p50_ms: Option<f64>,
}

/// One weftd in the Kubernetes part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeFigures {
    /// Which build: `this build`, or the baseline's `--baseline-label`.
    pub label: String,
    /// Start until every route, neighbour and FDB entry is in.
    pub cold_ms: Option<Summary>,
    /// VmRSS one second after each start.
    pub rss_mib: Option<Summary>,
    pub route: NodeRoute,
    /// CPU of a Node event that changes nothing a lease is made of (a
    /// status update): the store side alone, no pass should follow; µs per
    /// event.
    pub store_us: Option<Summary>,
    /// CPU of a Node change that alters the snapshot but nothing in the
    /// kernel (a skipped Node's new version): the store side, the publish
    /// and the pass together, µs per change. Together, because which of
    /// them an event pays for is what the builds differ in.
    pub change_us: Option<Summary>,
    /// Wall time of that pass, from weftd's own histogram, µs.
    pub pass_wall_us: Option<Summary>,
}

/// The control plane with the Kubernetes store at K peer Nodes: this
/// build's weftd and, when asked, an earlier build's measured alternately
/// in the same runs (each run measures both, back to back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeScale {
    pub k: u32,
    pub runs: usize,
    pub subject: KubeFigures,
    pub baseline: Option<KubeFigures>,
    /// Subject over baseline, run by run.
    pub cold_ratio: Option<Summary>,
    pub store_ratio: Option<Summary>,
    pub change_ratio: Option<Summary>,
    /// The subject's p50 over the baseline's p50 (all samples of each).
    pub route_p50_ratio: Option<f64>,
}

/// The etcd failover part: a three-member etcd losing its leader, and a
/// member cut off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdHa {
    pub members: usize,
    pub nodes: usize,
    /// Kill → a running member reports a new leader (the baseline).
    pub election_s: Option<Summary>,
    /// Kill → a lease put during the election routed on every node.
    pub routed_s: Option<Summary>,
    /// etcd taking that lease → the last node routing it.
    pub agents_ms: Option<Summary>,
    /// Cut → a lease put through the other members routed on every node.
    pub cut_off_s: Option<Summary>,
}
