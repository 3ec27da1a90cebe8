//! Data plane: pod → pod between two lab nodes for each backend, against
//! the underlay node → node path measured in the same lab, run by run.
//!
//! Within a run the two paths are measured back to back, in alternating
//! order from one run to the next, and the ratio is taken per run: load
//! from elsewhere on the machine then weighs on both sides of a ratio
//! alike, which is what makes ratios comparable across runs and machines.
//!
//! With `--flanneld`, the default vxlan lab gets a twin whose agents are
//! flanneld (`bench-dp-vxlan-flannel`, etcd store; its pods are made by
//! weft's CNI plugin, which reads flanneld's subnet.env as weftd's). Both
//! labs are up together and each run measures both, back to back, the
//! order flipping each run; the ratio of ratios is taken run by run.

use std::net::IpAddr;

use anyhow::{Context as _, Result, anyhow};
use std::path::Path as FilePath;

use weft_bench::results::{
    Dataplane, Figure, FlannelPath, MeasuredBackend, PathComparison, Variant,
};
use weft_bench::stats::{Summary, ratios};
use weft_lab::{Backend, Lab, LabSpec, StoreKind};

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

fn lab_name(ctx: &Ctx, v: Variant, flannel: bool) -> String {
    let flannel = if flannel { "-flannel" } else { "" };
    match &ctx.lab_suffix {
        Some(s) => format!("bench-dp-{}{flannel}-{s}", v.name()),
        None => format!("bench-dp-{}{flannel}", v.name()),
    }
}

/// The lab of `v`: weftd's, or with `flanneld` flanneld's (etcd store,
/// flanneld has no local one).
fn lab_up(ctx: &Ctx, v: Variant, flanneld: Option<&FilePath>) -> Result<Lab> {
    let name = lab_name(ctx, v, flanneld.is_some());
    let (backend, options) = backend(v);
    let mut spec = LabSpec::new(&name)?;
    spec.nodes = 2;
    spec.pods_per_node = 1;
    spec.backend = backend;
    spec.bin_dir = ctx.bin_dir.clone();
    if let Some(f) = flanneld {
        spec.flanneld = Some(f.to_owned());
        spec.store = StoreKind::Etcd;
    }
    for (key, value) in options {
        spec.backend_options
            .insert((*key).to_owned(), serde_json::Value::Bool(*value));
    }
    ctx.say(format!(
        "data plane: bringing lab {name} up ({}{})",
        v.label(),
        if flanneld.is_some() {
            ", flanneld agents"
        } else {
            ""
        }
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

/// What one lab gave.
#[derive(Default)]
struct BackendResult {
    pod: PathSamples,
    underlay: PathSamples,
}

/// The pod and underlay paths of a lab, once pod → pod works.
fn paths(lab: &Lab) -> Result<(Path<'static>, Path<'static>)> {
    let pod = Path {
        from: "node1-pod1",
        to: pod_ip(lab, "node2-pod1")?,
    };
    let underlay = Path {
        from: "node1",
        to: node_ip(lab, "node2")?,
    };
    wait_reachable(lab, pod.from, pod.to, std::time::Duration::from_secs(30))
        .with_context(|| format!("pod → pod does not work in lab {}", lab.name()))?;
    Ok((pod, underlay))
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

/// Every run of `lab`, and of `flannel`'s lab when given, alternating
/// which lab goes first.
fn measure_backend(
    ctx: &Ctx,
    lab: &Lab,
    label: &str,
    flannel: Option<&Lab>,
) -> Result<(BackendResult, Option<BackendResult>)> {
    let weft_paths = paths(lab)?;
    let flannel_paths = flannel.map(paths).transpose()?;
    let mut weft = BackendResult::default();
    let mut flannel_result = flannel.map(|_| BackendResult::default());
    for run in 0..ctx.runs {
        ctx.say(format!(
            "data plane: {label} run {}/{}: iperf3 1 and 4 streams, request/response, pod and underlay{}",
            run + 1,
            ctx.runs,
            if flannel.is_some() {
                ", weft's lab and flannel's"
            } else {
                ""
            }
        ));
        let a_first = run % 2 == 0;
        let one = |lab: &Lab, (pod, underlay): &(Path<'_>, Path<'_>), r: &mut BackendResult| {
            measure_pair(
                ctx,
                lab,
                (pod, underlay),
                a_first,
                (&mut r.pod, &mut r.underlay),
            )
        };
        match (flannel, &flannel_paths, flannel_result.as_mut()) {
            (Some(f), Some(fp), Some(fr)) if !a_first => {
                one(f, fp, fr)?;
                one(lab, &weft_paths, &mut weft)?;
            }
            (Some(f), Some(fp), Some(fr)) => {
                one(lab, &weft_paths, &mut weft)?;
                one(f, fp, fr)?;
            }
            _ => one(lab, &weft_paths, &mut weft)?,
        }
    }
    Ok((weft, flannel_result))
}

/// flanneld's figures, and weft's pod/underlay ratio over flanneld's, run
/// by run.
fn vs_flannel(weft: &BackendResult, flannel: &BackendResult) -> FlannelPath {
    let over = |pick: fn(&PathSamples) -> &[f64]| {
        let w = ratios(pick(&weft.pod), pick(&weft.underlay));
        let f = ratios(pick(&flannel.pod), pick(&flannel.underlay));
        Summary::of(&ratios(&w, &f))
    };
    FlannelPath {
        pod_vs_underlay: compare(&flannel.pod, &flannel.underlay),
        tcp_1_vs_flannel: over(|s| &s.one),
        tcp_4_vs_flannel: over(|s| &s.four),
    }
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
        let lab = match lab_up(ctx, v, None) {
            Ok(lab) => lab,
            Err(e) => {
                failures.push(format!(
                    "data plane {}: the lab did not come up: {e:#}",
                    v.label()
                ));
                continue;
            }
        };
        // flannel's twin lab: the default vxlan only.
        let flannel = match ctx.flanneld.as_deref().filter(|_| v == Variant::Vxlan) {
            Some(f) => match lab_up(ctx, v, Some(f)) {
                Ok(lab) => Some(lab),
                Err(e) => {
                    failures.push(format!(
                        "data plane {} with flanneld: the lab did not come up: {e:#}",
                        v.label()
                    ));
                    None
                }
            },
            None => None,
        };
        let measured = servers(&lab).and_then(|held| {
            let f_held = flannel.as_ref().map(servers).transpose()?;
            let r = measure_backend(ctx, &lab, v.label(), flannel.as_ref())?;
            Ok(((held, f_held), r))
        });
        match measured {
            Ok((held, (r, f))) => {
                result.backends.push(MeasuredBackend {
                    variant: v,
                    pod_vs_underlay: compare(&r.pod, &r.underlay),
                    flannel: f.as_ref().map(|f| vs_flannel(&r, f)),
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
        if let Some(f) = flannel
            && let Err(e) = f.down()
        {
            failures.push(format!(
                "data plane {} with flanneld: teardown: {e}",
                v.label()
            ));
        }
    }
    (result, failures)
}
