//! Data plane: pod → pod between two lab nodes for each backend, against
//! the underlay node → node path measured in the same lab, run by run.
//!
//! Within a run the two paths are measured back to back, in alternating
//! order from one run to the next, and the ratio is taken per run: load
//! from elsewhere on the machine then weighs on both sides of a ratio
//! alike, which is what makes ratios comparable across runs and machines.

use std::net::IpAddr;

use anyhow::{Context as _, Result, anyhow};
use weft_lab::{Backend, Lab, LabSpec};

use super::report::{Section, Table, Verdict};
use super::stats::{Summary, ratios, show};
use super::traffic::{EchoServer, IperfServer, iperf, tcp_rr, wait_reachable};
use super::{Ctx, wggo};

/// Samples of one path, one value per run.
#[derive(Debug, Default, Clone)]
pub struct PathSamples {
    pub one: Vec<f64>,
    pub four: Vec<f64>,
    pub rr_p50: Vec<f64>,
    pub rr_p99: Vec<f64>,
}

/// One measured path: who sends, to which address.
pub struct Path<'a> {
    pub from: &'a str,
    pub to: IpAddr,
}

/// Measures `a` and `b` once each (one run), in the order `a_first` says.
pub fn measure_pair(
    ctx: &Ctx,
    lab: &Lab,
    (a, b): (&Path<'_>, &Path<'_>),
    a_first: bool,
    (sa, sb): (&mut PathSamples, &mut PathSamples),
) -> Result<()> {
    let order: [(&Path<'_>, &mut PathSamples); 2] = if a_first {
        [(a, sa), (b, sb)]
    } else {
        [(b, sb), (a, sa)]
    };
    let mut order = order;
    for streams in [1, 4] {
        for (p, s) in order.iter_mut() {
            let gbps = iperf(lab, p.from, p.to, streams, ctx.iperf_secs())?;
            if streams == 1 {
                s.one.push(gbps);
            } else {
                s.four.push(gbps);
            }
        }
    }
    for (p, s) in order.iter_mut() {
        let (p50, p99) = tcp_rr(lab, p.from, p.to, ctx.rr_count())?;
        s.rr_p50.push(p50);
        s.rr_p99.push(p99);
    }
    Ok(())
}

/// Rows comparing `subject` with `baseline` (throughput: ratio
/// subject/baseline; latency: the same ratio, lower is better).
pub fn comparison_rows(
    t: &mut Table,
    label: &str,
    subject: &PathSamples,
    baseline: &PathSamples,
    target: &str,
) {
    let row = |t: &mut Table, figure: &str, s: &[f64], b: &[f64], digits: usize, target: &str| {
        t.row(vec![
            label.to_owned(),
            figure.to_owned(),
            show(Summary::of(s), digits),
            show(Summary::of(b), digits),
            show(Summary::of(&ratios(s, b)), 2),
            target.to_owned(),
        ]);
    };
    row(
        t,
        "TCP, 1 stream (Gbit/s)",
        &subject.one,
        &baseline.one,
        2,
        target,
    );
    row(
        t,
        "TCP, 4 streams (Gbit/s)",
        &subject.four,
        &baseline.four,
        2,
        target,
    );
    row(
        t,
        "TCP request/response p50 (µs)",
        &subject.rr_p50,
        &baseline.rr_p50,
        0,
        "",
    );
    row(
        t,
        "TCP request/response p99 (µs)",
        &subject.rr_p99,
        &baseline.rr_p99,
        0,
        "",
    );
}

pub fn table() -> Table {
    Table::new(&[
        "path",
        "figure",
        "measured (min / median / max)",
        "baseline (min / median / max)",
        "ratio per run (min / median / max)",
        "target (ratio)",
    ])
}

/// The median per-run ratio of throughput, for verdicts.
pub fn median_ratio(s: &[f64], b: &[f64]) -> Option<f64> {
    Summary::of(&ratios(s, b)).map(|r| r.median)
}

/// One lab configuration to measure: a backend, possibly with options.
struct Variant {
    backend: Backend,
    /// Shown in the table and used in the lab's name.
    label: &'static str,
    name: &'static str,
    options: &'static [(&'static str, bool)],
    /// The target ratio of pod → pod to the underlay, if issue 10 sets one.
    floor: Option<f64>,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        backend: Backend::Vxlan,
        label: "vxlan",
        name: "bench-dp-vxlan",
        options: &[],
        floor: Some(0.80),
    },
    Variant {
        backend: Backend::Vxlan,
        label: "vxlan with `TxChecksumOffload: true`",
        name: "bench-dp-vxlan-csum",
        options: &[("TxChecksumOffload", true)],
        floor: None,
    },
    Variant {
        backend: Backend::HostGw,
        label: "host-gw",
        name: "bench-dp-hostgw",
        options: &[],
        floor: Some(0.97),
    },
    Variant {
        backend: Backend::Ipip,
        label: "ipip",
        name: "bench-dp-ipip",
        options: &[],
        floor: None,
    },
    Variant {
        backend: Backend::Wireguard,
        label: "wireguard (userspace)",
        name: "bench-dp-wireguard",
        options: &[],
        floor: None,
    },
];

fn lab_name(ctx: &Ctx, v: &Variant) -> String {
    match &ctx.lab_suffix {
        Some(s) => format!("{}-{s}", v.name),
        None => v.name.to_owned(),
    }
}

fn lab_up(ctx: &Ctx, v: &Variant) -> Result<Lab> {
    let name = lab_name(ctx, v);
    let mut spec = LabSpec::new(&name)?;
    spec.nodes = 2;
    spec.pods_per_node = 1;
    spec.backend = v.backend;
    spec.bin_dir = ctx.bin_dir.clone();
    for (key, value) in v.options {
        spec.backend_options
            .insert((*key).to_owned(), serde_json::Value::Bool(*value));
    }
    ctx.say(format!("data plane: bringing lab {name} up ({})", v.label));
    Ok(Lab::up(&spec)?)
}

fn pod_ip(lab: &Lab, pod: &str) -> Result<IpAddr> {
    lab.pod(pod)?
        .addresses
        .first()
        .map(|a| a.addr())
        .ok_or_else(|| anyhow!("{pod} has no address"))
}

fn node_ip(lab: &Lab, node: &str) -> Result<IpAddr> {
    Ok(IpAddr::V4(lab.node(node)?.underlay_ip))
}

/// What one backend's lab gave.
struct BackendResult {
    pod: PathSamples,
    underlay: PathSamples,
}

/// iperf3 and echo servers on node2 and its pod, alive while held.
type Servers = (IperfServer, IperfServer, EchoServer, EchoServer);

fn servers(lab: &Lab) -> Result<Servers> {
    Ok((
        IperfServer::start(lab, "node2")?,
        IperfServer::start(lab, "node2-pod1")?,
        EchoServer::start(lab, "node2")?,
        EchoServer::start(lab, "node2-pod1")?,
    ))
}

fn measure_backend(ctx: &Ctx, lab: &Lab, label: &str) -> Result<BackendResult> {
    let pod = Path {
        from: "node1-pod1",
        to: pod_ip(lab, "node2-pod1")?,
    };
    let underlay = Path {
        from: "node1",
        to: node_ip(lab, "node2")?,
    };
    wait_reachable(lab, pod.from, pod.to, std::time::Duration::from_secs(30))
        .context("pod → pod does not work")?;
    let mut result = BackendResult {
        pod: PathSamples::default(),
        underlay: PathSamples::default(),
    };
    for run in 0..ctx.runs {
        ctx.say(format!(
            "data plane: {label} run {}/{}: iperf3 1 and 4 streams, request/response, pod and underlay",
            run + 1,
            ctx.runs
        ));
        measure_pair(
            ctx,
            lab,
            (&pod, &underlay),
            run % 2 == 0,
            (&mut result.pod, &mut result.underlay),
        )?;
    }
    Ok(result)
}

/// Runs the data plane section: every backend this kernel can run, then
/// weft's userspace WireGuard against wireguard-go in the wireguard lab.
pub fn run(ctx: &Ctx) -> (Vec<Section>, Vec<Verdict>, Vec<String>) {
    let mut failures = Vec::new();
    let mut verdicts = Vec::new();
    let mut section = Section::new("Data plane: pod → pod across two nodes");
    section.text(format!(
        "Two lab nodes (network namespaces on one underlay bridge, see docs/ARCHITECTURE.md), one pod \
         each made through the CNI plugin. Baseline: node → node over the underlay in the same lab, \
         measured back to back with the pod path in each run (order alternating). iperf3 {} s per \
         test after 1 s of slow start left out; request/response: {} one-byte TCP round trips per run \
         on one connection (Nagle off), p50 and p99. {} runs. Both ends of every path share the \
         machine's cores: compare ratios, not absolute numbers.",
        ctx.iperf_secs(),
        ctx.rr_count(),
        ctx.runs
    ));
    let mut t = table();
    let ipip = super::routes::ipip_supported();
    let mut extra = Vec::new();
    for v in &VARIANTS {
        let short_name = v.name.trim_start_matches("bench-dp-");
        if !ctx.dp_backends.is_empty() && !ctx.dp_backends.iter().any(|b| b == short_name) {
            continue;
        }
        if v.backend == Backend::Ipip && ipip.is_err() {
            continue;
        }
        let lab = match lab_up(ctx, v) {
            Ok(lab) => lab,
            Err(e) => {
                failures.push(format!(
                    "data plane {}: the lab did not come up: {e:#}",
                    v.label
                ));
                continue;
            }
        };
        match servers(&lab).and_then(|held| Ok((held, measure_backend(ctx, &lab, v.label)?))) {
            Ok((held, r)) => {
                let target = v.floor.map_or(String::new(), |f| format!("≥ {f:.2}"));
                let label = format!("{} pod → pod vs underlay", v.label);
                comparison_rows(&mut t, &label, &r.pod, &r.underlay, &target);
                if let Some(floor) = v.floor {
                    for (streams, s, b) in [
                        (1, &r.pod.one, &r.underlay.one),
                        (4, &r.pod.four, &r.underlay.four),
                    ] {
                        let m = median_ratio(s, b);
                        verdicts.push(Verdict::new(
                            &format!(
                                "{} pod → pod ≥ {floor} × underlay, {streams} stream(s)",
                                v.label
                            ),
                            m.map_or("n/a".into(), |m| format!("{m:.2} ×")),
                            m.map(|m| m >= floor),
                        ));
                    }
                }
                if v.backend == Backend::Wireguard {
                    match wggo::compare(ctx, &lab) {
                        Ok((sec, v)) => {
                            verdicts.extend(v);
                            extra.extend(sec.blocks);
                        }
                        Err(e) => failures.push(format!("WireGuard against wireguard-go: {e:#}")),
                    }
                }
                drop(held);
            }
            Err(e) => failures.push(format!("data plane {}: {e:#}", v.label)),
        }
        if let Err(e) = lab.down() {
            failures.push(format!("data plane {}: teardown: {e}", v.label));
        }
    }
    section.table(t);
    if let Err(e) = ipip {
        section.text(format!(
            "ipip: not measured. This kernel cannot create an ipip device ({e}); the backend needs \
             the `ipip` module (CONFIG_NET_IPIP), which this VM's kernel lacks."
        ));
    }
    section.text(
        "WireGuard here is weft's in-process userspace implementation (gotatun on a TUN device): \
         this kernel has no WireGuard module.",
    );
    let mut sections = vec![section];
    if !extra.is_empty() {
        let mut wg = Section::new("WireGuard: weft's userspace tunnel against wireguard-go");
        wg.blocks = extra;
        sections.push(wg);
    }
    (sections, verdicts, failures)
}
