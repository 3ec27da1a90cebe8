//! The results of a benchmark run as data: what `weft-bench run` writes
//! (`bench/results.json` for a full run) and what `weft-bench render` turns
//! into docs/PERFORMANCE.md.
//!
//! Why a file of its own and not the Markdown alone: the Markdown is a view
//! whose wording changes more often than the figures, tests that check
//! ratios (tests/bench_ratios.rs) must not scrape tables, and a kept run
//! can be rendered again after a change of wording or target without
//! another 30 minutes of measurement.
//!
//! What is kept: every number the report shows, as a number, including
//! those derived from others (ratios taken per run, a difference of
//! percentiles), because a derived figure cannot be recomputed from the
//! rounded summaries alone. What is not: the raw samples, and the verdicts
//! (whether a target is met), which the renderer decides from the figures
//! so that a target lives in one place. Fixed prose (the notes) is in the
//! code, not here.
//!
//! The file is JSON, one object (see [`Results`]); `format` is
//! [`FORMAT`], raised whenever a field changes meaning, and a file of
//! another format is refused rather than misread. Figures are written to
//! 6 significant digits (far below the noise of any of them), which also
//! makes them read back exactly: a run renders its Markdown from the JSON
//! it wrote, so rendering the kept file later gives the same text. A part
//! not run (`--only`) or failed is absent; a figure never measured is
//! `null`. A part added later (`kube_scale`) and the record of merged runs
//! (`merged`) are optional, so files written before them still read as
//! the same format.

mod parts;

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use parts::{
    AtK, BinarySizes, Cni, CniOp, Dataplane, EtcdHa, Figure, FlannelAtK, FlannelPath, FlannelScale,
    Growth, KubeFigures, KubeScale, LeaseLatency, MeasuredBackend, NodeRoute, PassCpu,
    PathComparison, Routes, Scale, Shape, ShapeTime, Variant,
};

/// The version of the file's layout this code reads and writes.
pub const FORMAT: u32 = 1;

/// Significant digits kept for every non-integer figure in the file.
const DIGITS: usize = 6;

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// pod → pod per backend vs the underlay; userspace WireGuard vs wireguard-go.
    Dataplane,
    /// Cold start, new lease → route, CPU per pass at K peers; memory, /readyz.
    Scale,
    /// CNI ADD/DEL per pod and the plugin's own share.
    Cni,
    /// The kernel alone: 10 000 routes by route shape.
    Routes,
    /// New node → route, CPU per event and per pass at 5 000 peer Nodes,
    /// Kubernetes store; optionally against an earlier build.
    #[serde(rename = "kube-scale")]
    #[value(name = "kube-scale")]
    KubeScale,
    /// A three-member etcd losing its leader or a member: how long until
    /// every agent routes a new lease.
    #[serde(rename = "etcd-ha")]
    #[value(name = "etcd-ha")]
    EtcdHa,
}

impl Part {
    /// Every part, in the order a full run measures and the report shows them.
    pub const ALL: [Part; 6] = [
        Part::Dataplane,
        Part::Scale,
        Part::KubeScale,
        Part::EtcdHa,
        Part::Cni,
        Part::Routes,
    ];
}

/// Everything one run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    /// [`FORMAT`].
    pub format: u32,
    pub run: RunInfo,
    pub machine: Machine,
    /// What failed, one line each: a part that failed is absent below.
    #[serde(default)]
    pub failures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<Dataplane>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_scale: Option<KubeScale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_ha: Option<EtcdHa>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<Cni>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Routes>,
    /// Partial runs whose parts were put into these results afterwards
    /// (`weft-bench merge`): their parts were measured then and there, not
    /// in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<MergedRun>,
}

/// A partial run merged into full results: what it measured, when, on what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedRun {
    pub run: RunInfo,
    pub machine: Machine,
}

/// How the run was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInfo {
    /// `--short`: fewer runs, samples and peer counts.
    pub short: bool,
    /// The parts asked for with `--only`; empty for a full run.
    #[serde(default)]
    pub only: Vec<Part>,
    /// Runs per figure unless a part says otherwise.
    pub runs: usize,
    /// Wall time of the whole run, in minutes.
    pub minutes: f64,
    /// The flanneld measured beside weft (`--flanneld`): its path and the
    /// first line of its `--version`; absent when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flanneld: Option<String>,
}

/// What the figures were measured on: a figure without its machine cannot
/// be compared with anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The day of the run (UTC), YYYY-MM-DD.
    pub date: String,
    /// CPUs available to the run.
    pub nproc: usize,
    pub cpu: String,
    /// Kernel release and architecture.
    pub kernel: String,
    /// Total memory; `null` when /proc/meminfo could not be read.
    pub memory_gib: Option<f64>,
    /// /proc/loadavg's three averages before the first part and after the last.
    pub load_start: String,
    pub load_end: String,
    /// The commit the binaries were built from (`+dirty` with local changes).
    pub commit: String,
    /// The first line of each reference tool's version.
    pub iperf3: String,
    pub wireguard_go: String,
    pub etcd: String,
}

/// Reading or writing a results file. The underlying error is part of
/// the message (a `cause`, not a `source`), so that `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{origin} is not weft-bench results: {cause}")]
    Parse {
        origin: String,
        cause: serde_json::Error,
    },
    #[error(
        "{origin} holds results of format {found}; this weft-bench reads format {FORMAT} \
         (render it with the weft-bench of its time, or run the benchmark again)"
    )]
    Format { origin: String, found: u64 },
    #[error("cannot encode the results: {0}")]
    Encode(serde_json::Error),
    #[error(
        "cannot merge: {0} (merge puts the parts of a partial run, `weft-bench run --only …`, \
         into a full run's results)"
    )]
    Merge(&'static str),
}

impl Results {
    /// Whether only some parts were asked for (`--only`): such results
    /// never replace the recorded full run by default.
    pub fn is_partial(&self) -> bool {
        !self.run.only.is_empty()
    }

    /// The file's text: pretty JSON, figures to [`DIGITS`] significant
    /// digits, a final newline.
    pub fn to_json(&self) -> Result<String, ResultsError> {
        let mut value = serde_json::to_value(self).map_err(ResultsError::Encode)?;
        round_floats(&mut value);
        // Back through the types, so that fields keep their declared order
        // (a `Value`'s members are sorted).
        let rounded: Results = serde_json::from_value(value).map_err(ResultsError::Encode)?;
        let mut text = serde_json::to_string_pretty(&rounded).map_err(ResultsError::Encode)?;
        text.push('\n');
        Ok(text)
    }

    /// Reads a file's text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Results, ResultsError> {
        let parse = |cause| ResultsError::Parse {
            origin: origin.to_owned(),
            cause,
        };
        let value: Value = serde_json::from_str(text).map_err(parse)?;
        // The format first, so that a file of another layout says so
        // instead of failing on its first unknown field.
        match value.get("format").and_then(Value::as_u64) {
            Some(f) if f == u64::from(FORMAT) => {}
            Some(found) => {
                return Err(ResultsError::Format {
                    origin: origin.to_owned(),
                    found,
                });
            }
            None => {}
        }
        serde_json::from_value(value).map_err(parse)
    }

    /// Puts the parts `partial` measured into these (full) results,
    /// replacing them, and records where they came from.
    pub fn merge(&mut self, partial: Results) -> Result<(), ResultsError> {
        if self.is_partial() {
            return Err(ResultsError::Merge("the results to merge into are partial"));
        }
        if !partial.is_partial() {
            return Err(ResultsError::Merge("the results to merge are a full run"));
        }
        if !partial.failures.is_empty() {
            return Err(ResultsError::Merge(
                "the partial run has failures; a failed part would erase the recorded one",
            ));
        }
        for part in &partial.run.only {
            match part {
                Part::Dataplane => self.dataplane.clone_from(&partial.dataplane),
                Part::Scale => self.scale.clone_from(&partial.scale),
                Part::KubeScale => self.kube_scale.clone_from(&partial.kube_scale),
                Part::EtcdHa => self.etcd_ha.clone_from(&partial.etcd_ha),
                Part::Cni => self.cni.clone_from(&partial.cni),
                Part::Routes => self.routes.clone_from(&partial.routes),
            }
        }
        // A part merged again replaces its earlier provenance.
        self.merged
            .retain(|m| !m.run.only.iter().any(|p| partial.run.only.contains(p)));
        self.merged.push(MergedRun {
            run: partial.run,
            machine: partial.machine,
        });
        Ok(())
    }

    /// Reads the results file at `path`.
    pub fn load(path: &Path) -> Result<Results, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ResultsError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Results::from_json(&text, &path.display().to_string())
    }
}

/// Rounds every non-integer number in `value` to [`DIGITS`] significant
/// digits. The shortest decimal of such a number has at most that many
/// digits, which serde_json reads back exactly (its exact path covers
/// mantissas below 2^53); a full-precision figure might come back one unit
/// in the last place off, and render differently at a rounding boundary.
fn round_floats(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let rounded = n
                .as_f64()
                .and_then(|x| {
                    format!("{x:.prec$e}", prec = DIGITS - 1)
                        .parse::<f64>()
                        .ok()
                })
                .and_then(serde_json::Number::from_f64);
            if let Some(r) = rounded {
                *n = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(round_floats),
        Value::Object(members) => members.values_mut().for_each(round_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
