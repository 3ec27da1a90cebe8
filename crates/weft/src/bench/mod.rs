//! `weft bench`: every benchmark of issue 10 in one command, written to
//! docs/PERFORMANCE.md.
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
mod leases;
mod machine;
mod netns;
mod probe;
mod report;
mod routes;
mod scale;
mod scale_report;
mod stats;
mod store;
mod traffic;
mod watcher;
mod wggo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};

use report::Report;

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// pod → pod per backend vs the underlay; userspace WireGuard vs wireguard-go.
    Dataplane,
    /// Cold start, new lease → route, CPU per pass at K peers; memory, /readyz.
    Scale,
    /// CNI ADD/DEL per pod and the plugin's own share.
    Cni,
    /// The kernel alone: 10 000 routes by route shape.
    Routes,
}

const ALL: [Part; 4] = [Part::Dataplane, Part::Scale, Part::Cni, Part::Routes];

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A quick pass: 3 runs, K = 100 and 1 000 only, shorter iperf3 tests
    /// (about 6 minutes instead of 30).
    #[arg(long)]
    short: bool,
    /// Run only these parts (comma-separated). Without --out the report
    /// then goes to stdout, so a partial run never replaces the full one.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Runs per figure (default 5, or 3 with --short).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: Option<u32>,
    /// Where to write the report (markdown); `-` for stdout.
    /// Default: docs/PERFORMANCE.md for a full run, stdout with --only.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Where weftd, weft and flannel (release builds) are. Default: next
    /// to this weft binary.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Peer counts K for the scale part (comma-separated). Default:
    /// 100,1000,5000,10000, or 100,1000 with --short.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=40_000))]
    peers: Vec<u32>,
    /// Leave the scale lab (`bench-scale`) up at the largest K, agent
    /// running, for profiling; `weft lab down --name bench-scale` removes it.
    #[arg(long)]
    keep: bool,
    /// Data plane part: only these backends (comma-separated among vxlan,
    /// vxlan-csum, hostgw, ipip, wireguard). Default: all.
    #[arg(long, value_delimiter = ',', value_name = "BACKEND")]
    dp_backends: Vec<String>,
    /// Data plane part: appended to the lab names (`bench-dp-<backend>-<suffix>`),
    /// so that two benches can run on one machine at once.
    #[arg(long, value_name = "SUFFIX")]
    lab_suffix: Option<String>,
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
    pub dp_backends: Vec<String>,
    /// Appended to data plane lab names, with a '-'.
    pub lab_suffix: Option<String>,
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

pub fn run(args: BenchArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: BenchArgs) -> anyhow::Result<ExitCode> {
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
    let parts: Vec<Part> = if args.only.is_empty() {
        ALL.to_vec()
    } else {
        args.only.clone()
    };
    let ctx = Ctx {
        short: args.short,
        keep: args.keep,
        peers: match (args.peers.is_empty(), args.short) {
            (false, _) => {
                let mut k = args.peers.clone();
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
        dp_backends: args.dp_backends.clone(),
        lab_suffix: args.lab_suffix.clone(),
        started: Instant::now(),
    };
    if !ctx.bin_dir.to_string_lossy().contains("release") {
        ctx.say(format!(
            "warning: {} does not look like a release build; figures of a debug build mean little",
            ctx.bin_dir.display()
        ));
    }
    let load = machine::load_average();
    let mut report = Report::default();
    for part in &parts {
        ctx.say(format!("=== {part:?} ==="));
        run_part(&ctx, *part, &mut report);
    }
    report.machine = machine::describe(&load);
    let mode = if ctx.short { " --short" } else { "" };
    report.header = vec![
        format!(
            "Written by `bench/run.sh{mode}` (`weft bench{mode}`) on {}; the whole run took {:.0} \
             minutes. Every figure is min / median / max over {} runs unless said, each next to a \
             baseline measured in the same run: on this shared machine absolute numbers move with \
             whatever else runs, ratios taken side by side much less. Rerun with `sudo bench/run.sh` \
             (add `--short` for a quick pass; `--help` explains the options).",
            machine::today(),
            ctx.started.elapsed().as_secs_f64() / 60.0,
            ctx.runs
        ),
        "Kernel and hardware limits that shape these numbers, and what was profiled and changed, \
         are discussed after the tables."
            .to_owned(),
    ];
    report.sections.push(notes());
    let markdown = report.markdown();
    let out = args.out.or_else(|| {
        args.only
            .is_empty()
            .then(|| PathBuf::from("docs/PERFORMANCE.md"))
    });
    match out {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::write(&path, &markdown)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            ctx.say(format!("wrote {}", path.display()));
        }
        _ => print!("{markdown}"),
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_part(ctx: &Ctx, part: Part, report: &mut Report) {
    match part {
        Part::Dataplane => {
            let (sections, verdicts, failures) = dataplane::run(ctx);
            report.sections.extend(sections);
            report.verdicts.extend(verdicts);
            report.failures.extend(failures);
        }
        Part::Scale => match scale::run(ctx) {
            Ok(all) => {
                let (s, v) = scale_report::control_plane(ctx.runs, &all);
                report.sections.push(s);
                report.verdicts.extend(v);
                let (s, v) = scale_report::footprint(ctx.runs, &ctx.bin_dir, &all);
                report.sections.push(s);
                report.verdicts.extend(v);
            }
            Err(e) => report
                .failures
                .push(format!("control plane at scale: {e:#}")),
        },
        Part::Cni => match cni::run(ctx) {
            Ok(s) => report.sections.push(s),
            Err(e) => report.failures.push(format!("CNI: {e:#}")),
        },
        Part::Routes => match routes::run(ctx) {
            Ok(s) => report.sections.push(s),
            Err(e) => report.failures.push(format!("route shapes: {e:#}")),
        },
    }
}

/// The prose after the tables, kept in one place: what limits the numbers.
fn notes() -> report::Section {
    let mut s = report::Section::new("Notes");
    s.text(include_str!("notes.md").trim());
    s
}
