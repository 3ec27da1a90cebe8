//! The CNI section: ADD and DEL per pod through weft's plugin.

use super::markdown::{Section, Table, summary_row};
use crate::results::Cni;

pub fn section(c: &Cni) -> Section {
    let mut sec = Section::new("CNI: ADD and DEL per pod");
    sec.text(format!(
        "weft's plugin (`flannel`) run in a lab node's namespace exactly as a runtime runs it \
         (cleared environment, config on stdin, a fresh pod namespace), delegating to Debian's \
         `bridge` + `host-local`. {} pods, each ADD then DEL; the baseline `bridge` is run directly \
         with the configuration the plugin itself saved for its delegate, interleaved with the \
         plugin's runs (order alternating). Times are spawn to exit, in ms.",
        c.pods
    ));
    let mut t = Table::new(&[
        "operation",
        "through the plugin, ms",
        "`bridge` alone, ms (baseline)",
        "plugin's own share per pod, ms",
        "share of the median",
    ]);
    for (op, o) in [("ADD", &c.add), ("DEL", &c.del), ("ADD + DEL", &c.add_del)] {
        let mut row = summary_row(op, &[(o.plugin_ms, 1), (o.bridge_ms, 1), (o.own_ms, 1)]);
        row.push(
            o.own_share_pct
                .map_or("n/a".into(), |p| format!("{p:.0} %")),
        );
        t.row(row);
    }
    sec.table(t);
    let mut t = Table::new(&["the plugin alone", "ms (min / median / max)"]);
    for (what, s) in [
        ("`VERSION` (start, answer, exit)", c.version_ms),
        (
            "ADD with a stub delegate, minus the stub alone",
            c.stub_add_ms,
        ),
        (
            "(the stub alone: /bin/sh printing a result)",
            c.stub_alone_ms,
        ),
    ] {
        t.row(summary_row(what, &[(s, 2)]));
    }
    sec.table(t);
    sec
}
