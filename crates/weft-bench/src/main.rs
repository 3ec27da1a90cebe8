//! `weft-bench`, weft's benchmark: `run` measures every benchmark of issue
//! 10 on labs of real agents and writes the results as JSON and as
//! docs/PERFORMANCE.md; `render` writes docs/PERFORMANCE.md again from a
//! kept results file, measuring nothing.
//!
//! A binary of its own, apart from the operator's `weft`, so that what
//! only the benchmark needs (an etcd client, the traffic and profiling
//! fixtures) is not shipped to every node.

mod measure;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_bench::{Results, render};

use output::{Dest, Outputs};

/// weft's benchmark (see `weft-bench run --help`).
#[derive(Debug, Parser)]
#[command(name = "weft-bench", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every benchmark of issue 10, write the results JSON and
    /// docs/PERFORMANCE.md (needs root).
    ///
    /// Builds labs (network namespaces with real agents) and measures: pod →
    /// pod throughput and latency per backend against the underlay, weft's
    /// userspace WireGuard against wireguard-go, the control plane with up to
    /// 10 000 synthetic peers (cold start, new lease → route, CPU per pass),
    /// the same with the Kubernetes store at 5 000 peer Nodes (optionally
    /// against an earlier build, --baseline-bin-dir), memory and start-up,
    /// CNI ADD/DEL, and the kernel's cost per route
    /// shape. Each figure is min / median / max over runs next to a baseline
    /// measured in the same run. With --flanneld, a real flanneld is
    /// measured beside weft in the same labs and runs (vxlan pod → pod ÷
    /// underlay, cold start, new lease → route, RSS) and reported with weft ÷
    /// flannel; without it the report says "flannel: not measured". Progress goes to stderr. Use release builds
    /// (bench/run.sh builds them). Takes about 30 minutes; --short about 6.
    ///
    /// A full run writes bench/results.json and docs/PERFORMANCE.md; a run
    /// with --only writes its report on stdout (or to --out) and no JSON
    /// unless --json says where, so a partial run never replaces the full one.
    Run(measure::RunArgs),
    /// Render docs/PERFORMANCE.md from a results JSON, measuring nothing.
    ///
    /// For a change of wording, of a target or of the notes: the figures
    /// stay those of the run that wrote the JSON. The results of a partial
    /// run go to stdout unless --out says where.
    Render {
        /// The results file `weft-bench run` wrote; `-` reads stdin.
        #[arg(default_value = "bench/results.json", value_name = "JSON")]
        json: PathBuf,
        /// Where to write the Markdown; `-` for stdout. Default:
        /// docs/PERFORMANCE.md for a full run's results, stdout otherwise.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Put the parts of a partial run (`run --only … --json FILE`) into a
    /// full run's results, then render docs/PERFORMANCE.md from them.
    ///
    /// For measuring one part again (a new part, or after a change that
    /// only it shows) without another full run: the merged parts replace
    /// the recorded ones, and the report says which parts come from which
    /// run, when, on what commit and under what load.
    Merge {
        /// The partial run's results.
        #[arg(value_name = "PARTIAL_JSON")]
        partial: PathBuf,
        /// The full run's results, rewritten in place.
        #[arg(long, default_value = "bench/results.json", value_name = "JSON")]
        into: PathBuf,
        /// Where to write the Markdown; `-` for stdout.
        #[arg(long, default_value = "docs/PERFORMANCE.md", value_name = "FILE")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => measure::run(args),
        Command::Render { json, out } => render_file(&json, out).map(|()| ExitCode::SUCCESS),
        Command::Merge { partial, into, out } => {
            merge(&partial, &into, &out).map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn render_file(json: &Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let results = match Dest::of(json) {
        Dest::Stdout => {
            let text = std::io::read_to_string(std::io::stdin())
                .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
            Results::from_json(&text, "stdin")?
        }
        Dest::File(path) => Results::load(&path)?,
    };
    let outputs = Outputs::markdown_only(out, results.is_partial())?;
    outputs.write_markdown(&render(&results))
}

fn merge(partial: &Path, into: &Path, out: &Path) -> anyhow::Result<()> {
    let outputs = Outputs::for_merge(into, out)?;
    let mut full = Results::load(into)?;
    full.merge(Results::load(partial)?)?;
    let text = full.to_json()?;
    // The Markdown from the JSON as written, as `run` does.
    let written = Results::from_json(&text, "the merged results")?;
    outputs.write_json(&text)?;
    outputs.write_markdown(&render(&written))
}
