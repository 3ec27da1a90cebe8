//! docs/PERFORMANCE.md from [`Results`]: the header, the machine, the
//! targets of issue 10 and whether this run met them, what failed, one
//! section per part, then the fixed notes.
//!
//! Rendering only formats: every number comes from the results, and only
//! the verdicts (a figure against its target) are decided here, so that a
//! target's wording and threshold can change and a kept run be rendered
//! again without measuring anything.

mod cni;
mod dataplane;
mod etcd_ha;
mod flannel;
mod kube_scale;
mod markdown;
mod routes;
mod scale;

use markdown::{Report, Section, Table};

use crate::results::{Machine, MergedRun, Part, Results};

/// First line of the file: the Markdown is generated, and the doc test
/// (tests/recorded.rs) fails when it no longer matches its JSON.
const GENERATED: &str = "<!-- Rendered by weft-bench from its results JSON (bench/results.json \
                         for the recorded run; `weft-bench render` renders it again): edit \
                         crates/weft-bench and its notes.md, not this file. -->";

/// The whole report.
pub fn render(results: &Results) -> String {
    let mut report = Report {
        header: header(results),
        machine: machine(&results.machine),
        failures: results.failures.clone(),
        ..Report::default()
    };
    if let Some(d) = &results.dataplane {
        let (s, v) = dataplane::sections(d);
        report.sections.extend(s);
        report.verdicts.extend(v);
    }
    if let Some(s) = &results.scale {
        let (s, v) = scale::sections(s);
        report.sections.extend(s);
        report.verdicts.extend(v);
    }
    if let Some((s, v)) = flannel::section(
        flanneld(results),
        results.dataplane.as_ref(),
        results.scale.as_ref(),
    ) {
        report.sections.push(s);
        report.verdicts.extend(v);
    }
    if let Some(k) = &results.kube_scale {
        report.sections.push(kube_scale::section(k));
    }
    if let Some(e) = &results.etcd_ha {
        report.sections.push(etcd_ha::section(e));
    }
    if let Some(c) = &results.cni {
        report.sections.push(cni::section(c));
    }
    if let Some(r) = &results.routes {
        report.sections.push(routes::section(r));
    }
    report.sections.push(notes());
    // One final newline, not the blank line every block leaves after it.
    format!("{GENERATED}\n\n{}\n", report.markdown().trim_end())
}

/// The flanneld measured beside weft: this run's, or a merged run's.
fn flanneld(results: &Results) -> Option<&str> {
    results.run.flanneld.as_deref().or_else(|| {
        results
            .merged
            .iter()
            .find_map(|m| m.run.flanneld.as_deref())
    })
}

/// The command line that produced the results, after `bench/run.sh` or
/// `weft-bench run`.
fn mode(results: &Results) -> String {
    let mut mode = String::new();
    if results.run.short {
        mode.push_str(" --short");
    }
    if results.is_partial() {
        mode.push_str(&format!(" --only {}", names(&results.run.only).join(",")));
    }
    mode
}

/// The parts' names as `--only` takes them.
fn names(parts: &[Part]) -> Vec<String> {
    parts
        .iter()
        .filter_map(clap::ValueEnum::to_possible_value)
        .map(|v| v.get_name().to_owned())
        .collect()
}

fn header(results: &Results) -> Vec<String> {
    let mode = mode(results);
    let mut lines = vec![
        format!(
            "Written by `bench/run.sh{mode}` (`weft-bench run{mode}`) on {}; the whole run took {:.0} \
             minutes. Every figure is min / median / max over {} runs unless said, each next to a \
             baseline measured in the same run: on this shared machine absolute numbers move with \
             whatever else runs, ratios taken side by side much less. Rerun with `sudo bench/run.sh` \
             (add `--short` for a quick pass; `--help` explains the options).",
            results.machine.date, results.run.minutes, results.run.runs
        ),
        "Kernel and hardware limits that shape these numbers, and what was profiled and changed, \
         are discussed after the tables."
            .to_owned(),
    ];
    lines.extend(results.merged.iter().map(merged));
    lines
}

/// Where the figures of a merged partial run come from.
fn merged(m: &MergedRun) -> String {
    let only = names(&m.run.only);
    format!(
        "The figures of `{}` come from a separate run, `weft-bench run --only {}{}` on {} \
         (commit {}, load average at start / end {} / {}, {:.1} minutes, {} runs), merged into \
         these results with `weft-bench merge`; the machine table above describes the full run.",
        only.join("`, `"),
        only.join(","),
        if m.run.short { " --short" } else { "" },
        m.machine.date,
        m.machine.commit,
        m.machine.load_start,
        m.machine.load_end,
        m.run.minutes,
        m.run.runs
    )
}

fn machine(m: &Machine) -> Table {
    let mut t = Table::new(&["item", "value"]);
    let rows = [
        ("date (UTC)", m.date.clone()),
        ("nproc", m.nproc.to_string()),
        ("CPU", m.cpu.clone()),
        ("kernel", m.kernel.clone()),
        (
            "memory",
            m.memory_gib
                .map_or_else(|| "unknown".to_owned(), |g| format!("{g:.1} GiB")),
        ),
        (
            "load average at start / end",
            format!("{} / {}", m.load_start, m.load_end),
        ),
        ("weft commit", m.commit.clone()),
        ("iperf3", m.iperf3.clone()),
        ("wireguard-go", m.wireguard_go.clone()),
        ("etcd", m.etcd.clone()),
    ];
    for (k, v) in rows {
        t.row(vec![k.to_owned(), v]);
    }
    t
}

/// The prose after the tables, kept in one place: what limits the numbers.
fn notes() -> Section {
    let mut s = Section::new("Notes");
    s.text(include_str!("../notes.md").trim());
    s
}

#[cfg(test)]
mod tests;
