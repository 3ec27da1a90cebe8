use super::*;

const SMALL: &str = include_str!("../testdata/small.json");

fn small() -> Results {
    Results::from_json(SMALL, "small.json").unwrap()
}

fn assert_lines(md: &str, lines: &[&str]) {
    for l in lines {
        assert!(
            md.lines().any(|m| m == *l),
            "missing line:\n{l}\n--- in ---\n{md}"
        );
    }
}

#[test]
fn renders_the_report_from_a_json_fixture() {
    let md = render(&small());
    assert!(md.starts_with("<!-- Rendered by weft-bench"));
    assert_lines(
        &md,
        &[
            "# weft — performance",
            "| memory | 23.5 GiB |",
            "| load average at start / end | 1.56 1.62 1.34 / 1.13 2.03 1.91 |",
            "| target | measured (median unless said) | met |",
            "| vxlan pod → pod ≥ 0.8 × underlay, 1 stream(s) | 0.16 × | **no** |",
            "| userspace WireGuard ≥ 2 × wireguard-go, 4 stream(s) | 1.90 × | **no** |",
            "| userspace WireGuard ≥ 2 × wireguard-go, 1 stream(s) | 5.99 × | yes |",
            "| cold start with 10 000 peers < 1 s | n/a | not measured |",
            "| new lease → route p99 < 20 ms at K = 5 000 | 17.8 ms | yes |",
            "| CPU per no-change pass grows no faster than linearly (per-peer cost at the largest K ≤ 1.25 × at K = 1 000) | 1.00 × | yes |",
            "| store side per renewal stays flat (largest K ≤ 2 × smallest K, or within 0.2 ms of it) | 120 → 395 µs | **no** |",
            "| weftd RSS ≤ 10 MiB at K = 5 000 | 12.1 MiB | **no** |",
            "- data plane host-gw: the lab did not come up: no bridge",
            "| vxlan pod → pod vs underlay | TCP, 1 stream (Gbit/s) | 1.20 / 1.40 / 1.50 | 8.10 / 8.40 / 9.50 | 0.15 / 0.16 / 0.17 | ≥ 0.80 |",
            "| vxlan pod → pod vs underlay | TCP request/response p99 (µs) | n/a | 180 / 212 / 732 | n/a |  |",
            "| weft vs wireguard-go | TCP, 4 streams (Gbit/s) | 1.55 / 1.58 / 1.78 | 0.24 / 0.25 / 0.27 | 1.50 / 1.90 / 2.10 | ≥ 2.0 |",
            "| 1000 | 86 / 98 / 122 | 40 / 42 / 45 | 1.90 / 2.37 / 2.92 | 35 / 37 / 40 |",
            "| 1000 | 20 | 4.8 / 12.8 | 1.6 / 4.5 | 3.2 |",
            "| 1000 | 120 | 6925 | 6.93 | 5222 | 10 / 11 |",
            "| 5000 | 395 | 34780 | 6.96 | n/a | 10 / 10 |",
            "| 0 | 12.0 / 12.1 / 12.3 | 1.2 / 1.2 / 1.2 | 12.0 / 12.1 / 12.3 | 35 / 37 / 40 |",
            "| `weft` | 5120 KiB |",
            "| Debian's `bridge` CNI plugin (Go), for scale | missing |",
            "| ADD | 28.5 / 39.3 / 55.6 | 26.7 / 34.7 / 45.2 | -6.4 / 3.5 / 22.8 | 9 % |",
            "| DEL | 65.3 / 77.7 / 97.5 | 62.6 / 78.9 / 117.7 | -45.3 / -0.6 / 24.0 | -1 % |",
            "| ADD + DEL | n/a | n/a | n/a | n/a |",
            "| `VERSION` (start, answer, exit) | 1.09 / 1.52 / 1.95 |",
            "| flannel's shape + a distinct metric per route | 110 / 118 / 131 | 0.06 |",
            "| 1000 | 36.9 / 44.4 / 51.2 | 44.4 |",
            "| figure | 77e1202 (before) | this build | this build / baseline |",
            "| new Node → route p50 / p90 / max, ms | 9.5 / 19.0 / 28.5 | 6.5 / 13.0 / 19.5 | p50 0.684 × |",
            "| CPU per Node event that changes no lease, µs | 2000 / 2500 / 3000 | 32 / 40 / 48 | 0.010 / 0.016 / 0.020 × |",
            "| CPU per change that runs a pass with nothing to change, µs | 10800 / 12000 / 13200 | 8100 / 9000 / 9900 | n/a |",
        ],
    );
    assert!(md.contains(
        "The figures of `kube-scale` come from a separate run, `weft-bench run --only kube-scale \
         --short` on 2026-12-09 (commit abc1234,"
    ));
    assert!(md.contains(
        "Written by `bench/run.sh --short` (`weft-bench run --short`) on 2026-12-08; the whole run \
         took 6 minutes. Every figure is min / median / max over 3 runs unless said"
    ));
    assert!(md.contains("iperf3 2 s per test"));
    assert!(md.contains("cannot create an ipip device (Operation not supported);"));
    assert!(md.contains("start to exit, 1.7 / 2.1 / 2.2 ms (min / median / max)"));
    assert!(md.contains("delegating to Debian's `bridge` + `host-local`. 10 pods"));
    assert!(md.contains("`flannel.1`: 10000 routes, nothing else running in it. 3 runs."));
    assert!(md.contains("## Notes\n\nThese notes are fixed text"));
    let order = [
        "## Machine",
        "## Targets (issue 10)",
        "## What failed in this run",
        "## Data plane: pod → pod across two nodes",
        "## WireGuard: weft's userspace tunnel against wireguard-go",
        "## Control plane at scale",
        "## Footprint",
        "## Against flannel, in the same run",
        "## Control plane at scale, Kubernetes store",
        "## CNI: ADD and DEL per pod",
        "## Kernel: installing 10 000 vxlan routes, by route shape",
        "## Notes",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|h| {
            md.find(&format!("\n{h}\n"))
                .unwrap_or_else(|| panic!("no {h}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "sections out of order");
}

#[test]
fn a_partial_run_shows_only_its_parts_and_says_so() {
    let mut r = small();
    r.run.only = vec![crate::results::Part::Cni];
    r.run.short = false;
    r.dataplane = None;
    r.scale = None;
    r.kube_scale = None;
    r.routes = None;
    r.merged.clear();
    r.failures.clear();
    let md = render(&r);
    assert!(md.contains("Written by `bench/run.sh --only cni` (`weft-bench run --only cni`)"));
    assert!(md.contains("## CNI: ADD and DEL per pod"));
    for absent in [
        "## Targets",
        "## What failed",
        "## Data plane",
        "## Control plane",
    ] {
        assert!(!md.contains(absent), "{absent} in a CNI-only report");
    }
}

#[test]
fn tables_lay_out_as_markdown() {
    let mut r = markdown::Report {
        machine: Table::new(&["item", "value"]),
        ..markdown::Report::default()
    };
    r.machine.row(vec!["nproc".into(), "2".into()]);
    r.verdicts.push(markdown::Verdict::new(
        "vxlan ≥ 0.80",
        "0.9".into(),
        Some(true),
    ));
    let mut s = Section::new("Data plane");
    s.text("prose");
    s.table(Table::new(&["a", "b"]));
    r.sections.push(s);
    let md = r.markdown();
    assert!(md.contains("| nproc | 2 |"));
    assert!(md.contains("| vxlan ≥ 0.80 | 0.9 | yes |"));
    assert!(md.contains("## Data plane\n\nprose\n\n| a | b |\n| --- | --- |"));
}

/// Without a baseline the Kubernetes section shows one build, no ratios.
#[test]
fn the_kubernetes_section_without_a_baseline_has_one_column() {
    let mut r = small();
    let ks = r.kube_scale.as_mut().unwrap();
    ks.baseline = None;
    let md = render(&r);
    assert_lines(
        &md,
        &[
            "| figure | this build |",
            "| new Node → route p50 / p90 / max, ms | 6.5 / 13.0 / 19.5 |",
        ],
    );
    assert!(!md.contains("Two builds of weftd"));
}

/// A run without `--flanneld` says so, and how to measure flannel; the
/// same-run goals show as not measured.
#[test]
fn without_a_flanneld_flannel_is_not_measured() {
    let md = render(&small());
    assert_lines(
        &md,
        &[
            "flannel: not measured. `sudo bench/run.sh --flanneld /path/to/flanneld` measures it \
             beside weft in the same run.",
            "| vxlan pod → pod ÷ underlay ≥ flannel's in the same run, 1 stream | flannel: not measured | not measured |",
            "| new lease → route at K = 5 000: p50 and p99 ≤ flannel's in the same run | flannel: not measured | not measured |",
        ],
    );
    assert!(!md.contains("flanneld measured:"));
    // A run of neither part has no such section.
    let mut r = small();
    r.dataplane = None;
    r.scale = None;
    assert!(!render(&r).contains("\n## Against flannel"));
}

/// flanneld's figures beside weft's, as a `--flanneld` run records them,
/// read back from JSON (older files without them still read: small.json).
#[test]
fn with_a_flanneld_flannel_sits_next_to_weft() {
    use crate::results::{FlannelAtK, FlannelPath, FlannelScale};
    use crate::stats::Summary;
    let s = |min, median, max| {
        Some(Summary {
            min,
            median,
            max,
            n: 3,
        })
    };
    let mut r = small();
    r.run.flanneld = Some("/opt/flanneld (v0.26.1)".to_owned());
    let d = r.dataplane.as_mut().unwrap();
    let mut flannel_dp = d.backends[0].pod_vs_underlay;
    flannel_dp.tcp_1_gbps.ratio = s(0.5, 0.6, 0.7);
    d.backends[0].flannel = Some(FlannelPath {
        pod_vs_underlay: flannel_dp,
        tcp_1_vs_flannel: s(0.9, 1.05, 1.2),
        tcp_4_vs_flannel: s(0.8, 0.95, 1.1),
    });
    let sc = r.scale.as_mut().unwrap();
    let mut flannel_5000 = sc.at_k[2].clone();
    flannel_5000.cold_ms = s(3000.0, 3500.0, 4000.0);
    flannel_5000.cpu = None;
    flannel_5000.lease.as_mut().unwrap().route_p50_ms = Some(23.0);
    flannel_5000.lease.as_mut().unwrap().route_p99_ms = Some(35.6);
    sc.flannel = Some(FlannelScale {
        at_k: vec![FlannelAtK {
            flannel: flannel_5000,
            cold_vs_flannel: s(0.2, 0.24, 0.3),
            rss_vs_flannel: s(0.3, 0.35, 0.4),
        }],
    });
    let r = Results::from_json(&r.to_json().unwrap(), "test").unwrap();
    let md = render(&r);
    assert_lines(
        &md,
        &[
            "| vxlan pod → pod ÷ underlay ≥ flannel's in the same run, 1 stream | weft ÷ flannel 1.05 × | yes |",
            "| new lease → route at K = 5 000: p50 and p99 ≤ flannel's in the same run | weft 11.5 / 17.8 ms, flannel 23.0 / 35.6 ms | yes |",
            "| TCP, 1 stream | 0.15 / 0.16 / 0.17 | 0.50 / 0.60 / 0.70 | 0.90 / 1.05 / 1.20 |",
            "| TCP, 4 streams | 0.09 / 0.10 / 0.14 | 0.09 / 0.10 / 0.14 | 0.80 / 0.95 / 1.10 |",
            "| 5000 | 763 / 834 / 915 | 3000 / 3500 / 4000 | 1.90 / 2.37 / 2.92 | 0.20 / 0.24 / 0.30 | 12.0 / 12.1 / 12.3 | 12.0 / 12.1 / 12.3 | 0.30 / 0.35 / 0.40 |",
            "| 5000 | 11.5 / 17.8 | 23.0 / 35.6 | 0.50 / 0.50 | 37 / 37 |",
        ],
    );
    assert!(md.contains("flanneld measured: `/opt/flanneld (v0.26.1)`"));
    assert!(!md.contains("flannel: not measured"));

    // weft slower than flannel at K = 5 000: the goal is not met.
    let mut slower = r.clone();
    let f = slower.scale.as_mut().unwrap().flannel.as_mut().unwrap();
    f.at_k[0].flannel.lease.as_mut().unwrap().route_p99_ms = Some(10.0);
    assert_lines(
        &render(&slower),
        &[
            "| new lease → route at K = 5 000: p50 and p99 ≤ flannel's in the same run | weft 11.5 / 17.8 ms, flannel 23.0 / 10.0 ms | **no** |",
        ],
    );
}
