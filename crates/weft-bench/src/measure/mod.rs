//! `weft-bench run`: every benchmark of issue 10 in one command.
//!
//! Each figure is measured on labs of real agents (network namespaces,
//! see `weft-lab`) and reported as min / median / max over runs next to a
//! baseline measured in the same run, because absolute numbers on a shared
//! 2-core machine mean little while ratios taken side by side do.
//!
//! The benchmark drives reference tools as fixtures — iperf3, Debian's
//! wireguard-go and `wg`, etcd, the reference CNI plugins, and `ip -batch`
//! for the one kernel object weft's netlink layer has no message for
//! (nexthops). weft's own paths are always weft's own code.

mod cni;
mod dataplane;
mod etcd_ha;
mod feed;
mod footprint;
mod kube_api;
mod kube_scale;
mod leases;
mod machine;
mod probe;
mod routes;
mod scale;
mod store;
mod traffic;
mod vs_flannel;
mod watcher;
mod wggo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use weft_bench::render;
use weft_bench::results::{FORMAT, Part, Results, RunInfo, Variant};

use crate::output::Outputs;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A quick pass: 3 runs, K = 100 and 1 000 only, shorter iperf3 tests
    /// (about 6 minutes instead of 30).
    #[arg(long)]
    short: bool,
    /// Run only these parts (comma-separated). Without --out the report
    /// then goes to stdout and without --json no JSON is written, so a
    /// partial run never replaces the full one.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Runs per figure (default 5, or 3 with --short).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: Option<u32>,
    /// Where to write the results (JSON); `-` for stdout. Default:
    /// bench/results.json for a full run, none with --only.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where to write the report (Markdown, rendered from the JSON); `-`
    /// for stdout. Default: docs/PERFORMANCE.md for a full run, stdout
    /// with --only.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Where weftd, weft and flannel (release builds) are. Default: next
    /// to this weft-bench binary.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Peer counts K for the scale part (comma-separated). Default:
    /// 100,1000,5000,10000, or 100,1000 with --short.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=40_000))]
    peers: Vec<u32>,
    /// Leave the scale lab (`bench-scale`) up at the largest K, agent
    /// running, for profiling; `weft lab down --name bench-scale` removes it.
    /// The kube-scale labs (`bench-kube`, `bench-kube-base`) are left up too.
    #[arg(long)]
    keep: bool,
    /// kube-scale part: also measure the weftd in DIR (an earlier build;
    /// DIR must hold weftd and weft-kube-testserver), in the same runs,
    /// alternating with this build's, and report this build against it.
    #[arg(long, value_name = "DIR")]
    baseline_bin_dir: Option<PathBuf>,
    /// What the baseline build is, for the report (a commit, "before …").
    #[arg(long, value_name = "TEXT", default_value = "baseline")]
    baseline_label: String,
    /// Data plane part: only these backends (comma-separated). Default: all.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "BACKEND")]
    dp_backends: Vec<Variant>,
    /// Data plane part: appended to the lab names (`bench-dp-<backend>-<suffix>`),
    /// so that two benches can run on one machine at once.
    #[arg(long, value_name = "SUFFIX")]
    lab_suffix: Option<String>,
    /// Also measure real flannel, in the same run: this flanneld binary
    /// runs (with flanneld's flags only, etcd store) on the scale lab's
    /// node alternating with weftd — cold start, new lease → route and RSS
    /// at K = 0 and each K ≥ 5 000 (a short run: its largest K) — and as
    /// the agents of a second vxlan data plane lab (pod → pod ÷ underlay).
    /// The report puts flannel next to weft and the ratio weft ÷ flannel;
    /// without this flag it says "flannel: not measured". flanneld needs
    /// iptables and the br_netfilter module (`modprobe br_netfilter`).
    #[arg(long, value_name = "PATH")]
    flanneld: Option<PathBuf>,
}

/// What every part needs: how long to measure, where the binaries are,
/// and where progress goes.
pub struct Ctx {
    pub short: bool,
    pub keep: bool,
    /// K values of the scale part.
    pub peers: Vec<u32>,
    pub runs: usize,
    pub bin_dir: PathBuf,
    /// Data plane backends to run (empty: all).
    pub dp_backends: Vec<Variant>,
    /// Appended to data plane lab names, with a '-'.
    pub lab_suffix: Option<String>,
    /// kube-scale: an earlier build's directory, measured alongside.
    pub baseline_bin_dir: Option<PathBuf>,
    pub baseline_label: String,
    /// scale and dataplane: a flanneld measured beside weft (absolute).
    pub flanneld: Option<PathBuf>,
    started: Instant,
}

impl Ctx {
    /// One progress line on stderr, with the time since the start.
    pub fn say(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[{:>5.0}s] {}",
            self.started.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }

    /// Seconds per iperf3 test (after one second of slow start).
    pub fn iperf_secs(&self) -> u32 {
        if self.short { 2 } else { 5 }
    }

    /// Round trips per request/response sample.
    pub fn rr_count(&self) -> usize {
        if self.short { 1_000 } else { 2_000 }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let outputs = Outputs::for_run(args.json, args.out, !args.only.is_empty())?;
    weft_lab::require_root()?;
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => weft_lab::default_bin_dir()?,
    };
    if !bin_dir.join("weftd").is_file() {
        anyhow::bail!(
            "{} has no weftd: build first (`cargo build --release --workspace`) or pass --bin-dir \
             (bench/run.sh does both)",
            bin_dir.display()
        );
    }
    // Absolute: the labs start these binaries from their own directories.
    let baseline_bin_dir = match &args.baseline_bin_dir {
        Some(dir) if dir.join("weftd").is_file() => Some(std::fs::canonicalize(dir)?),
        Some(dir) => anyhow::bail!(
            "--baseline-bin-dir {} has no weftd: build the earlier commit and pass the \
             directory holding its weftd and weft-kube-testserver",
            dir.display()
        ),
        None => None,
    };
    let bin_dir = std::fs::canonicalize(&bin_dir)?;
    let flanneld = args
        .flanneld
        .as_deref()
        .map(vs_flannel::check_binary)
        .transpose()?;
    let ctx = Ctx {
        short: args.short,
        keep: args.keep,
        peers: match (args.peers.is_empty(), args.short) {
            (false, _) => {
                let mut k = args.peers;
                k.sort_unstable();
                k.dedup();
                k
            }
            (true, true) => vec![100, 1_000],
            (true, false) => vec![100, 1_000, 5_000, 10_000],
        },
        runs: args
            .runs
            .map_or(if args.short { 3 } else { 5 }, |r| r as usize),
        bin_dir,
        dp_backends: args.dp_backends,
        lab_suffix: args.lab_suffix,
        baseline_bin_dir,
        baseline_label: args.baseline_label,
        flanneld,
        started: Instant::now(),
    };
    if !ctx.bin_dir.to_string_lossy().contains("release") {
        ctx.say(format!(
            "warning: {} does not look like a release build; figures of a debug build mean little",
            ctx.bin_dir.display()
        ));
    }
    let flanneld = ctx.flanneld.as_deref().map(vs_flannel::describe);
    if let Some(f) = &flanneld {
        ctx.say(format!("flannel: measuring {f} beside weft"));
        if let Some(w) = vs_flannel::host_warning() {
            ctx.say(format!("warning: {w}"));
        }
    }
    let load = machine::load_average();
    let parts = if args.only.is_empty() {
        Part::ALL.to_vec()
    } else {
        args.only.clone()
    };
    let mut results = Results {
        format: FORMAT,
        run: RunInfo {
            short: ctx.short,
            only: args.only,
            runs: ctx.runs,
            minutes: 0.0,
            flanneld,
        },
        machine: machine::describe(&load),
        failures: Vec::new(),
        dataplane: None,
        scale: None,
        kube_scale: None,
        etcd_ha: None,
        cni: None,
        routes: None,
        merged: Vec::new(),
    };
    for part in parts {
        ctx.say(format!("=== {part:?} ==="));
        run_part(&ctx, part, &mut results);
    }
    results.machine.load_end = machine::load_average();
    results.run.minutes = ctx.started.elapsed().as_secs_f64() / 60.0;
    let json = results.to_json();
    let json_written = match &json {
        Ok(text) => outputs.write_json(text),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    // The Markdown from the JSON as written (figures rounded the same way),
    // so that `weft-bench render` of the kept file gives this very text;
    // from the results in memory if that failed, so a run is never lost.
    let shown = json
        .ok()
        .and_then(|text| Results::from_json(&text, "the results just encoded").ok())
        .unwrap_or_else(|| results.clone());
    outputs.write_markdown(&render(&shown))?;
    json_written?;
    Ok(if results.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_part(ctx: &Ctx, part: Part, results: &mut Results) {
    let failures = &mut results.failures;
    match part {
        Part::Dataplane => {
            let (d, f) = dataplane::run(ctx);
            results.dataplane = Some(d);
            failures.extend(f);
        }
        Part::Scale => keep(
            scale::run(ctx),
            &mut results.scale,
            "control plane at scale",
            failures,
        ),
        Part::KubeScale => keep(
            kube_scale::run(ctx),
            &mut results.kube_scale,
            "control plane at scale, Kubernetes store",
            failures,
        ),
        Part::EtcdHa => keep(
            etcd_ha::run(ctx),
            &mut results.etcd_ha,
            "etcd failover",
            failures,
        ),
        Part::Cni => keep(cni::run(ctx), &mut results.cni, "CNI", failures),
        Part::Routes => keep(
            routes::run(ctx),
            &mut results.routes,
            "route shapes",
            failures,
        ),
    }
}

/// A part's figures into their place in the results, or why the part
/// failed into `failures`.
fn keep<T>(
    figures: anyhow::Result<T>,
    slot: &mut Option<T>,
    part: &str,
    failures: &mut Vec<String>,
) {
    match figures {
        Ok(f) => *slot = Some(f),
        Err(e) => failures.push(format!("{part}: {e:#}")),
    }
}
