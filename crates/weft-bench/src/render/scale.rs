//! The control-plane and footprint sections and their verdicts.

use super::markdown::{Section, Table, Verdict, summary_row};
use crate::results::{AtK, Scale};
use crate::stats::{Summary, show};

fn med(s: Option<Summary>) -> Option<f64> {
    s.map(|s| s.median)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

/// [`opt`] with a unit after a number (none after "n/a").
fn opt_unit(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$} {unit}"))
}

/// Both sections of the scale part and their verdicts.
pub fn sections(s: &Scale) -> (Vec<Section>, Vec<Verdict>) {
    let (cp, mut verdicts) = control_plane(s);
    let (fp, v) = footprint(s);
    verdicts.extend(v);
    (vec![cp, fp], verdicts)
}

fn control_plane(sc: &Scale) -> (Section, Vec<Verdict>) {
    let all = &sc.at_k;
    let mut s = Section::new("Control plane at scale");
    s.text(format!(
        "One lab node running weftd (vxlan, etcd store on the lab's underlay), cluster network \
         10.0.0.0/8 with /24 subnets, K synthetic peer leases written straight into etcd (flannel's \
         exact key and value; public IPs 172.16.x.y that nothing answers). {} runs per K.",
        sc.runs
    ));
    s.text(
        "**(a) Cold start**: the agent is stopped and `flannel.1` deleted (which takes every route, \
         neighbour and FDB entry of weft with it), then the agent is started; the clock runs from its \
         start until the kernel holds K routes, K neighbours and K FDB entries (lookups of the last \
         peer's route while waiting, one full count at the end). Baseline: the same 3 × K entries \
         programmed with weft's bare netlink batches into a fresh namespace, in the same run.",
    );
    let mut t = Table::new(&[
        "K",
        "cold start, ms",
        "bare netlink, ms (baseline)",
        "ratio per run",
        "start → /readyz 200, ms",
    ]);
    for at in all.iter().filter(|a| a.k > 0) {
        t.row(summary_row(
            at.k,
            &[
                (at.cold_ms, 0),
                (at.raw_ms, 0),
                (at.cold_ratio, 2),
                (at.ready_ms, 0),
            ],
        ));
    }
    s.table(t);
    s.text(
        "**(b) One new lease → its route in the kernel**, on the agent already holding K peers: \
         the clock runs from the etcd put until a route lookup on the node goes via the new peer. \
         Baseline: when an etcd watch on the same key, in this process, hears of the put (the \
         store's own delivery time). One sample per lease, leases spaced out so passes never queue.",
    );
    let mut t = Table::new(&[
        "K",
        "samples",
        "lease → route p50 / p99, ms",
        "etcd watch p50 / p99, ms (baseline)",
        "weft's own share p50, ms",
    ]);
    for at in all.iter().filter(|a| a.k > 0) {
        let l = at.lease;
        let pair = |a: Option<f64>, b: Option<f64>| format!("{} / {}", opt(a, 1), opt(b, 1));
        t.row(vec![
            at.k.to_string(),
            l.map_or(0, |l| l.samples).to_string(),
            pair(
                l.and_then(|l| l.route_p50_ms),
                l.and_then(|l| l.route_p99_ms),
            ),
            pair(
                l.and_then(|l| l.watch_p50_ms),
                l.and_then(|l| l.watch_p99_ms),
            ),
            opt(l.and_then(|l| l.own_p50_ms), 1),
        ]);
    }
    s.table(t);
    s.text(
        "**(c) CPU per reconcile pass with nothing to change**, from the sum of weftd's threads' run \
         times (`/proc/<pid>/task/*/schedstat`) around bursts of triggers, idle CPU of an equal quiet \
         window subtracted. Store side: a peer lease rewritten with its same value (a renewal): \
         the watch event is parsed and checked, and no snapshot or pass follows. Pass: a skipped lease \
         rewritten, which changes the snapshot's skipped counter and so runs a full pass (plan, three \
         kernel dumps, diff) that changes nothing. Wall time from weftd's own \
         `weft_reconcile_duration_seconds`.",
    );
    let mut t = Table::new(&[
        "K",
        "store side, µs/event",
        "pass, µs CPU",
        "pass, µs CPU per peer",
        "pass, µs wall",
        "triggers / passes",
    ]);
    for at in all.iter().filter(|a| a.k > 0) {
        let Some(c) = at.cpu else { continue };
        t.row(vec![
            at.k.to_string(),
            format!("{:.0}", c.store_us),
            format!("{:.0}", c.pass_us),
            format!("{:.2}", c.pass_us_per_peer),
            opt(c.pass_wall_us, 0),
            format!("{} / {}", c.triggers, c.passes),
        ]);
    }
    s.table(t);
    (s, control_plane_verdicts(all))
}

fn control_plane_verdicts(all: &[AtK]) -> Vec<Verdict> {
    let mut v = Vec::new();
    let at = |k: u32| all.iter().find(|a| a.k == k);
    let cold = at(10_000).and_then(|a| med(a.cold_ms));
    v.push(Verdict::new(
        "cold start with 10 000 peers < 1 s",
        opt_unit(cold, 0, "ms"),
        cold.map(|c| c < 1_000.0),
    ));
    let p99 = at(5_000).and_then(|a| a.lease?.route_p99_ms);
    v.push(Verdict::new(
        "new lease → route p99 < 20 ms at K = 5 000",
        opt_unit(p99, 1, "ms"),
        p99.map(|p| p < 20.0),
    ));
    // Linear means a flat cost per peer; K = 100 is dominated by fixed
    // costs, so compare the largest K with K = 1 000, with the noise seen
    // between runs (±25 %) allowed.
    let per_peer = |a: &AtK| a.cpu.map(|c| c.pass_us_per_peer);
    let big = all
        .iter()
        .filter(|a| a.k > 1_000 && a.cpu.is_some())
        .max_by_key(|a| a.k);
    let growth = at(1_000)
        .and_then(per_peer)
        .zip(big.and_then(per_peer))
        .map(|(a, b)| b / a);
    v.push(Verdict::new(
        "CPU per no-change pass grows no faster than linearly (per-peer cost at the largest K ≤ 1.25 × at K = 1 000)",
        growth.map_or("n/a (short run)".into(), |g| format!("{g:.2} ×")),
        growth.map(|g| g <= 1.25),
    ));
    // Flat store side: a renewal costs the same at every K. The figure
    // sits near this measurement's noise floor (≈ 0.2 ms), hence the slack.
    let store = |a: &AtK| a.cpu.map(|c| c.store_us);
    let small = all
        .iter()
        .filter(|a| a.k > 0 && a.cpu.is_some())
        .min_by_key(|a| a.k);
    let flat = small.and_then(store).zip(big.or(small).and_then(store));
    v.push(Verdict::new(
        "store side per renewal stays flat (largest K ≤ 2 × smallest K, or within 0.2 ms of it)",
        flat.map_or("n/a".into(), |(a, b)| format!("{a:.0} → {b:.0} µs")),
        flat.map(|(a, b)| b <= 2.0 * a || b - a <= 200.0),
    ));
    v
}

fn size(kib: Option<f64>) -> String {
    kib.map_or_else(|| "missing".to_owned(), |k| format!("{k:.0} KiB"))
}

fn footprint(sc: &Scale) -> (Section, Vec<Verdict>) {
    let mut s = Section::new("Footprint");
    s.text(
        "weftd's resident memory (VmRSS) one second after each cold start, the part of it that is \
         the process's own (RssAnon: heap, stacks; the rest is pages of the binary and libc, shared \
         and reclaimable), and its peak (VmHWM), from /proc; K = 0 is the idle agent (no peer). Target: ≤ 10 MiB at K = 5 000 (flannel's \
         manifest requests 50 MiB, and its users report OOM kills at that size).",
    );
    let mut t = Table::new(&[
        "K",
        "RSS, MiB",
        "of which anonymous, MiB",
        "peak RSS, MiB",
        "start → /readyz 200, ms",
    ]);
    for at in &sc.at_k {
        t.row(summary_row(
            at.k,
            &[
                (at.rss_mib, 1),
                (at.anon_mib, 1),
                (at.peak_mib, 1),
                (at.ready_ms, 0),
            ],
        ));
    }
    s.table(t);
    s.text(format!(
        "Baseline for start → ready: `weftd --version` start to exit, {} ms (min / median / max): \
         what starting the binary costs at all. Ready means the devices, rules and subnet.env are \
         in place (peers come after, see the cold start above).",
        show(sc.exec_ms, 1)
    ));
    let mut b = Table::new(&["binary (release)", "size"]);
    let z = &sc.sizes;
    for (name, kib) in [
        ("`weftd`", z.weftd),
        ("`weft`", z.weft),
        ("`flannel`", z.flannel),
        ("Debian's `bridge` CNI plugin (Go), for scale", z.cni_bridge),
        ("Debian's `wireguard-go` (Go), for scale", z.wireguard_go),
    ] {
        b.row(vec![name.to_owned(), size(kib)]);
    }
    s.table(b);
    let rss = sc
        .at_k
        .iter()
        .find(|a| a.k == 5_000)
        .and_then(|a| med(a.rss_mib));
    let v = vec![Verdict::new(
        "weftd RSS ≤ 10 MiB at K = 5 000",
        opt_unit(rss, 1, "MiB"),
        rss.map(|r| r <= 10.0),
    )];
    (s, v)
}
