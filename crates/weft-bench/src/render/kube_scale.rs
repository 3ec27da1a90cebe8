//! The Kubernetes store's control-plane section: one build, or an earlier
//! build and this one side by side with their ratios.

use super::markdown::{Section, Table};
use crate::results::{KubeFigures, KubeScale, NodeRoute};
use crate::stats::{Summary, show};

fn route(r: &NodeRoute) -> String {
    let v = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.1}"));
    format!("{} / {} / {}", v(r.p50_ms), v(r.p90_ms), v(r.max_ms))
}

fn times(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3} ×"))
}

fn times_summary(s: Option<Summary>) -> String {
    s.map_or_else(|| "n/a".to_owned(), |s| format!("{} ×", s.show(3)))
}

/// One row: the figure's name, its value per build, and its ratio (shown
/// when there is a baseline).
struct Row {
    name: String,
    value: fn(&KubeFigures) -> String,
    ratio: Option<String>,
}

pub fn section(ks: &KubeScale) -> Section {
    let mut s = Section::new("Control plane at scale, Kubernetes store");
    s.text(format!(
        "One lab node running weftd (vxlan, `--kube-subnet-mgr`) against weft's Kubernetes API \
         test server, which holds K = {} peer Nodes registered as a kubelet registers them \
         (`kubectl get node -o json` shape: labels, addresses, conditions) with flannel's four \
         annotations (`backend-data`, `backend-type`, `kube-subnet-manager`, `public-ip`) and a /24 \
         podCIDR in 10.0.0.0/8. {} runs.",
        ks.k, ks.runs
    ));
    if ks.baseline.is_some() {
        s.text(
            "Two builds of weftd, each on a lab of its own with its own API server filled alike, \
             only one agent running at a time; each run measures both back to back (in \
             alternating order) and the ratios, this build over the earlier one, are taken run by \
             run, so that a burst of load weighs on both sides of each ratio alike.",
        );
    }
    s.text(
        "**New Node → its route**: from the create (the test server's control API) until a route \
         lookup on the node goes via the new peer, over every sample (new Nodes spaced out so \
         passes never queue); the API server's own answer to the create is the baseline. \
         **CPU per event with nothing to change**: an annotation weft neither reads nor writes \
         set on a peer Node (a Node update that changes no lease, as a kubelet's status update); \
         no snapshot, no pass should follow. **CPU per change that runs a pass**: a skipped Node \
         (another backend) given a new version, which changes the skipped counter and so makes \
         the agent publish a snapshot and run a full pass that changes nothing in the kernel; \
         the store side, the publish and the pass together (an earlier build published on \
         every event, so only the sum compares). Both from weftd's threads' run times around \
         bursts of triggers, idle CPU subtracted, one figure per run (min / median / max over \
         runs).",
    );
    let rows = [
        Row {
            name: "new Node → route p50 / p90 / max, ms".to_owned(),
            value: |f| route(&f.route),
            ratio: Some(format!("p50 {}", times(ks.route_p50_ratio))),
        },
        Row {
            name: "samples".to_owned(),
            value: |f| f.route.samples.to_string(),
            ratio: None,
        },
        Row {
            name: "API server answered the create, p50, ms (baseline)".to_owned(),
            value: |f| {
                f.route
                    .api_p50_ms
                    .map_or_else(|| "n/a".to_owned(), |x| format!("{x:.1}"))
            },
            ratio: None,
        },
        Row {
            name: "CPU per Node event that changes no lease, µs".to_owned(),
            value: |f| show(f.store_us, 0),
            ratio: Some(times_summary(ks.store_ratio)),
        },
        Row {
            name: "CPU per change that runs a pass with nothing to change, µs".to_owned(),
            value: |f| show(f.change_us, 0),
            ratio: Some(times_summary(ks.change_ratio)),
        },
        Row {
            name: "wall time of that pass, µs".to_owned(),
            value: |f| show(f.pass_wall_us, 0),
            ratio: None,
        },
        Row {
            name: format!(
                "start → all {} routes, neighbours and FDB entries in, ms",
                ks.k
            ),
            value: |f| show(f.cold_ms, 0),
            ratio: Some(times_summary(ks.cold_ratio)),
        },
        Row {
            name: "weftd RSS one second after the start, MiB".to_owned(),
            value: |f| show(f.rss_mib, 1),
            ratio: None,
        },
    ];
    let mut headers = vec!["figure".to_owned()];
    headers.extend(ks.baseline.iter().map(|b| b.label.clone()));
    headers.push(ks.subject.label.clone());
    if ks.baseline.is_some() {
        headers.push("this build / baseline".to_owned());
    }
    let mut t = Table {
        headers,
        rows: Vec::new(),
    };
    for row in rows {
        let mut cells = vec![row.name];
        cells.extend(ks.baseline.iter().map(row.value));
        cells.push((row.value)(&ks.subject));
        if ks.baseline.is_some() {
            cells.push(row.ratio.unwrap_or_default());
        }
        t.row(cells);
    }
    s.table(t);
    s
}
