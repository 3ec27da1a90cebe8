//! Data plane: pod → pod between two lab nodes for each backend, against
//! the underlay node → node path measured in the same lab, run by run.
//!
//! Within a run the two paths are measured back to back, in alternating
//! order from one run to the next, and the ratio is taken per run: load
//! from elsewhere on the machine then weighs on both sides of a ratio
//! alike, which is what makes ratios comparable across runs and machines.

use std::net::IpAddr;

use anyhow::{Context as _, Result, anyhow};
use weft_bench::results::{Dataplane, Figure, MeasuredBackend, PathComparison, Variant};
use weft_bench::stats::{Summary, ratios};
use weft_lab::{Backend, Lab, LabSpec};

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

/// One figure of `subject` against `baseline`, with per-run ratios.
fn figure(subject: &[f64], baseline: &[f64]) -> Figure {
    Figure {
        measured: Summary::of(subject),
        baseline: Summary::of(baseline),
        ratio: Summary::of(&ratios(subject, baseline)),
    }
}

/// `subject` against `baseline`, figure by figure (throughput: ratio
/// subject/baseline; latency: the same ratio, lower is better).
pub fn compare(subject: &PathSamples, baseline: &PathSamples) -> PathComparison {
    PathComparison {
        tcp_1_gbps: figure(&subject.one, &baseline.one),
        tcp_4_gbps: figure(&subject.four, &baseline.four),
        rr_p50_us: figure(&subject.rr_p50, &baseline.rr_p50),
        rr_p99_us: figure(&subject.rr_p99, &baseline.rr_p99),
    }
}

/// The lab backend of a variant, and the backend options it sets.
fn backend(v: Variant) -> (Backend, &'static [(&'static str, bool)]) {
    match v {
        Variant::Vxlan => (Backend::Vxlan, &[]),
        Variant::VxlanCsum => (Backend::Vxlan, &[("TxChecksumOffload", true)]),
        Variant::Hostgw => (Backend::HostGw, &[]),
        Variant::Ipip => (Backend::Ipip, &[]),
        Variant::Wireguard => (Backend::Wireguard, &[]),
    }
}

fn lab_name(ctx: &Ctx, v: Variant) -> String {
    match &ctx.lab_suffix {
        Some(s) => format!("bench-dp-{}-{s}", v.name()),
        None => format!("bench-dp-{}", v.name()),
    }
}

fn lab_up(ctx: &Ctx, v: Variant) -> Result<Lab> {
    let name = lab_name(ctx, v);
    let (backend, options) = backend(v);
    let mut spec = LabSpec::new(&name)?;
    spec.nodes = 2;
    spec.pods_per_node = 1;
    spec.backend = backend;
    spec.bin_dir = ctx.bin_dir.clone();
    for (key, value) in options {
        spec.backend_options
            .insert((*key).to_owned(), serde_json::Value::Bool(*value));
    }
    ctx.say(format!(
        "data plane: bringing lab {name} up ({})",
        v.label()
    ));
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

/// Runs the data plane part: every backend this kernel can run, then
/// weft's userspace WireGuard against wireguard-go in the wireguard lab.
/// Also returns what failed, one line each.
pub fn run(ctx: &Ctx) -> (Dataplane, Vec<String>) {
    let mut failures = Vec::new();
    let ipip = super::routes::ipip_supported();
    let mut result = Dataplane {
        runs: ctx.runs,
        iperf_secs: ctx.iperf_secs(),
        rr_count: ctx.rr_count(),
        backends: Vec::new(),
        ipip_unsupported: ipip.clone().err(),
        wireguard_go: None,
    };
    for v in Variant::ALL {
        if !ctx.dp_backends.is_empty() && !ctx.dp_backends.contains(&v) {
            continue;
        }
        if v == Variant::Ipip && ipip.is_err() {
            continue;
        }
        let lab = match lab_up(ctx, v) {
            Ok(lab) => lab,
            Err(e) => {
                failures.push(format!(
                    "data plane {}: the lab did not come up: {e:#}",
                    v.label()
                ));
                continue;
            }
        };
        match servers(&lab).and_then(|held| Ok((held, measure_backend(ctx, &lab, v.label())?))) {
            Ok((held, r)) => {
                result.backends.push(MeasuredBackend {
                    variant: v,
                    pod_vs_underlay: compare(&r.pod, &r.underlay),
                });
                if v == Variant::Wireguard {
                    match wggo::compare(ctx, &lab) {
                        Ok(c) => result.wireguard_go = Some(c),
                        Err(e) => failures.push(format!("WireGuard against wireguard-go: {e:#}")),
                    }
                }
                drop(held);
            }
            Err(e) => failures.push(format!("data plane {}: {e:#}", v.label())),
        }
        if let Err(e) = lab.down() {
            failures.push(format!("data plane {}: teardown: {e}", v.label()));
        }
    }
    (result, failures)
}
