//! The data plane sections: pod → pod per backend against the underlay,
//! and weft's userspace WireGuard against wireguard-go.

use super::markdown::{Section, Table, Verdict};
use crate::results::{Dataplane, Figure, PathComparison};
use crate::stats::show;

fn table() -> Table {
    Table::new(&[
        "path",
        "figure",
        "measured (min / median / max)",
        "baseline (min / median / max)",
        "ratio per run (min / median / max)",
        "target (ratio)",
    ])
}

/// The four rows of `label`: throughput with a `target` on the ratio,
/// latency without one (lower is better there).
fn comparison_rows(t: &mut Table, label: &str, c: &PathComparison, target: &str) {
    let rows: [(&str, &Figure, usize, &str); 4] = [
        ("TCP, 1 stream (Gbit/s)", &c.tcp_1_gbps, 2, target),
        ("TCP, 4 streams (Gbit/s)", &c.tcp_4_gbps, 2, target),
        ("TCP request/response p50 (µs)", &c.rr_p50_us, 0, ""),
        ("TCP request/response p99 (µs)", &c.rr_p99_us, 0, ""),
    ];
    for (figure, f, digits, target) in rows {
        t.row(vec![
            label.to_owned(),
            figure.to_owned(),
            show(f.measured, digits),
            show(f.baseline, digits),
            show(f.ratio, 2),
            target.to_owned(),
        ]);
    }
}

/// A verdict on the median per-run throughput ratio, 1 and 4 streams.
fn throughput_verdicts(
    c: &PathComparison,
    target: impl Fn(u32) -> String,
    floor: f64,
) -> [Verdict; 2] {
    [(1, &c.tcp_1_gbps), (4, &c.tcp_4_gbps)].map(|(streams, f)| {
        let m = f.ratio.map(|r| r.median);
        Verdict::new(
            &target(streams),
            m.map_or("n/a".into(), |m| format!("{m:.2} ×")),
            m.map(|m| m >= floor),
        )
    })
}

/// The data plane section, the WireGuard one when it was measured, and
/// their verdicts.
pub fn sections(d: &Dataplane) -> (Vec<Section>, Vec<Verdict>) {
    let mut verdicts = Vec::new();
    let mut section = Section::new("Data plane: pod → pod across two nodes");
    section.text(format!(
        "Two lab nodes (network namespaces on one underlay bridge, see docs/ARCHITECTURE.md), one pod \
         each made through the CNI plugin. Baseline: node → node over the underlay in the same lab, \
         measured back to back with the pod path in each run (order alternating). iperf3 {} s per \
         test after 1 s of slow start left out; request/response: {} one-byte TCP round trips per run \
         on one connection (Nagle off), p50 and p99. {} runs. Both ends of every path share the \
         machine's cores: compare ratios, not absolute numbers.",
        d.iperf_secs, d.rr_count, d.runs
    ));
    let mut t = table();
    for b in &d.backends {
        let v = b.variant;
        let target = v.floor().map_or(String::new(), |f| format!("≥ {f:.2}"));
        let label = format!("{} pod → pod vs underlay", v.label());
        comparison_rows(&mut t, &label, &b.pod_vs_underlay, &target);
        if let Some(floor) = v.floor() {
            verdicts.extend(throughput_verdicts(
                &b.pod_vs_underlay,
                |streams| {
                    format!(
                        "{} pod → pod ≥ {floor} × underlay, {streams} stream(s)",
                        v.label()
                    )
                },
                floor,
            ));
        }
    }
    section.table(t);
    if let Some(e) = &d.ipip_unsupported {
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
    if let Some(wg) = &d.wireguard_go {
        let mut s = Section::new("WireGuard: weft's userspace tunnel against wireguard-go");
        s.text(format!(
            "node1 → node2 through weft's `flannel-wg` (gotatun in weftd) and through `wgo0` run by \
             Debian's wireguard-go on the same two nodes at the same time (same MTU; each tunnel's own \
             port). Baseline: wireguard-go. {} runs.",
            d.runs
        ));
        let mut t = table();
        comparison_rows(&mut t, "weft vs wireguard-go", wg, "≥ 2.0");
        s.table(t);
        verdicts.extend(throughput_verdicts(
            wg,
            |streams| format!("userspace WireGuard ≥ 2 × wireguard-go, {streams} stream(s)"),
            2.0,
        ));
        sections.push(s);
    }
    (sections, verdicts)
}
