//! The section against real flannel (`--flanneld`), measured in the same
//! run as weft, and the same-run goals; without a flanneld it says
//! "flannel: not measured" and how to measure it.

use super::markdown::{Section, Table, Verdict};
use crate::results::{AtK, Dataplane, FlannelAtK, FlannelPath, Scale, Variant};
use crate::stats::{Summary, show};

/// How to measure flannel, for the "not measured" line.
const HOW: &str = "`sudo bench/run.sh --flanneld /path/to/flanneld` measures it beside weft in the \
                   same run";

/// The section and its verdicts, when the run measured the data plane or
/// the scale part (the parts flannel is compared in); `flanneld` is what
/// `--flanneld` measured, if anything.
pub fn section(
    flanneld: Option<&str>,
    dataplane: Option<&Dataplane>,
    scale: Option<&Scale>,
) -> Option<(Section, Vec<Verdict>)> {
    if dataplane.is_none() && scale.is_none() {
        return None;
    }
    let mut s = Section::new("Against flannel, in the same run");
    let vxlan = dataplane.and_then(|d| {
        d.backends
            .iter()
            .find(|b| b.variant == Variant::Vxlan)
            .and_then(|b| Some((b.pod_vs_underlay, b.flannel?)))
    });
    let at_k = scale.and_then(|sc| sc.flannel.as_ref().map(|f| (sc, f)));
    match flanneld {
        Some(f) if vxlan.is_some() || at_k.is_some() => s.text(format!(
            "flanneld measured: `{f}`, run by the labs with flanneld's flags only (etcd store, \
             vxlan). Each figure sits next to weft's from the same runs; ratios are weft ÷ flannel, \
             taken run by run."
        )),
        _ => s.text(format!("flannel: not measured. {HOW}.")),
    }
    let mut verdicts = Vec::new();
    if dataplane.is_some() {
        if let Some((weft, f)) = &vxlan {
            s.text(
                "**vxlan pod → pod ÷ underlay**: weft's lab and a twin lab whose agents are \
                 flanneld (pods through weft's CNI plugin in both), up together; each run \
                 measures both labs back to back, the order flipping each run.",
            );
            let mut t = Table::new(&[
                "figure",
                "weft: pod ÷ underlay per run",
                "flannel: pod ÷ underlay per run",
                "weft ÷ flannel per run",
            ]);
            t.row(vec![
                "TCP, 1 stream".to_owned(),
                show(weft.tcp_1_gbps.ratio, 2),
                show(f.pod_vs_underlay.tcp_1_gbps.ratio, 2),
                show(f.tcp_1_vs_flannel, 2),
            ]);
            t.row(vec![
                "TCP, 4 streams".to_owned(),
                show(weft.tcp_4_gbps.ratio, 2),
                show(f.pod_vs_underlay.tcp_4_gbps.ratio, 2),
                show(f.tcp_4_vs_flannel, 2),
            ]);
            t.row(vec![
                "TCP request/response p50, pod (µs)".to_owned(),
                show(weft.rr_p50_us.measured, 0),
                show(f.pod_vs_underlay.rr_p50_us.measured, 0),
                String::new(),
            ]);
            s.table(t);
        }
        verdicts.push(dataplane_verdict(vxlan.as_ref().map(|(_, f)| f)));
    }
    if let Some(sc) = scale {
        if let Some((sc, f)) = at_k {
            scale_tables(&mut s, sc, &f.at_k);
        }
        verdicts.push(lease_verdict(sc));
    }
    Some((s, verdicts))
}

fn dataplane_verdict(f: Option<&FlannelPath>) -> Verdict {
    let target = "vxlan pod → pod ÷ underlay ≥ flannel's in the same run, 1 stream";
    let m = f.and_then(|f| f.tcp_1_vs_flannel).map(|r| r.median);
    Verdict::new(
        target,
        match (f, m) {
            (None, _) => "flannel: not measured".to_owned(),
            (Some(_), None) => "n/a".to_owned(),
            (Some(_), Some(m)) => format!("weft ÷ flannel {m:.2} ×"),
        },
        m.map(|m| m >= 1.0),
    )
}

fn lease_verdict(sc: &Scale) -> Verdict {
    let target = "new lease → route at K = 5 000: p50 and p99 ≤ flannel's in the same run";
    let weft = sc.at_k.iter().find(|a| a.k == 5_000).and_then(|a| a.lease);
    let flannel = sc
        .flannel
        .as_ref()
        .and_then(|f| f.at_k.iter().find(|a| a.flannel.k == 5_000))
        .and_then(|a| a.flannel.lease);
    let pair = weft.zip(flannel).and_then(|(w, f)| {
        Some((
            (w.route_p50_ms?, w.route_p99_ms?),
            (f.route_p50_ms?, f.route_p99_ms?),
        ))
    });
    let measured = match (&sc.flannel, pair) {
        (None, _) => "flannel: not measured".to_owned(),
        (Some(_), None) => "n/a (K = 5 000 not measured)".to_owned(),
        (Some(_), Some(((w50, w99), (f50, f99)))) => {
            format!("weft {w50:.1} / {w99:.1} ms, flannel {f50:.1} / {f99:.1} ms")
        }
    };
    Verdict::new(
        target,
        measured,
        pair.map(|((w50, w99), (f50, f99))| w50 <= f50 && w99 <= f99),
    )
}

fn med(s: Option<Summary>) -> String {
    s.map_or_else(|| "n/a".to_owned(), |s| format!("{:.0}", s.median))
}

fn scale_tables(s: &mut Section, sc: &Scale, flannel: &[FlannelAtK]) {
    s.text(
        "**Control plane** on the scale lab's node (see above): flanneld and weftd take turns \
         on the same node, etcd and peers, their cold starts alternating run by run (bare netlink \
         baseline shared); then each takes its new leases. RSS one second after each cold start.",
    );
    let weft_at = |k: u32| sc.at_k.iter().find(|a| a.k == k);
    let mut t = Table::new(&[
        "K",
        "cold start weft, ms",
        "cold start flannel, ms",
        "flannel ÷ bare netlink",
        "weft ÷ flannel per run",
        "RSS weft, MiB",
        "RSS flannel, MiB",
        "weft ÷ flannel per run",
    ]);
    for f in flannel {
        let k = f.flannel.k;
        let w: Option<&AtK> = weft_at(k);
        t.row(vec![
            k.to_string(),
            show(w.and_then(|w| w.cold_ms), 0),
            show(f.flannel.cold_ms, 0),
            // At K = 0 the baseline installs nothing: no ratio to speak of.
            if k > 0 {
                show(f.flannel.cold_ratio, 2)
            } else {
                "n/a".to_owned()
            },
            show(f.cold_vs_flannel, 2),
            show(w.and_then(|w| w.rss_mib), 1),
            show(f.flannel.rss_mib, 1),
            show(f.rss_vs_flannel, 2),
        ]);
    }
    s.table(t);
    let mut t = Table::new(&[
        "K",
        "lease → route p50 / p99 weft, ms",
        "lease → route p50 / p99 flannel, ms",
        "weft ÷ flannel p50 / p99",
        "start → /readyz 200 weft / flannel, ms (median)",
    ]);
    let pair = |a: Option<f64>, b: Option<f64>, digits: usize| {
        let one = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"));
        format!("{} / {}", one(a), one(b))
    };
    let div =
        |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
    for f in flannel.iter().filter(|f| f.flannel.k > 0) {
        let w = weft_at(f.flannel.k);
        let wl = w.and_then(|w| w.lease);
        let fl = f.flannel.lease;
        let (w50, w99) = (
            wl.and_then(|l| l.route_p50_ms),
            wl.and_then(|l| l.route_p99_ms),
        );
        let (f50, f99) = (
            fl.and_then(|l| l.route_p50_ms),
            fl.and_then(|l| l.route_p99_ms),
        );
        t.row(vec![
            f.flannel.k.to_string(),
            pair(w50, w99, 1),
            pair(f50, f99, 1),
            pair(div(w50, f50), div(w99, f99), 2),
            format!(
                "{} / {}",
                med(w.and_then(|w| w.ready_ms)),
                med(f.flannel.ready_ms)
            ),
        ]);
    }
    s.table(t);
}
