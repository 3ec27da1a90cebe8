//! The kernel section: installing vxlan routes by route shape.

use super::markdown::{Section, Table};
use crate::results::Routes;
use crate::stats::show;

pub fn section(r: &Routes) -> Section {
    let mut section = Section::new("Kernel: installing 10 000 vxlan routes, by route shape");
    section.text(format!(
        "Each line is timed in a fresh network namespace holding only an underlay veth and an up \
         `flannel.1`: {} routes, nothing else running in it. {} runs. The ratio is against the \
         first line (flannel's shape, what weft installs today), median over median.",
        r.routes, r.runs
    ));
    let mut t = Table::new(&["how", "ms (min / median / max)", "× flannel's shape"]);
    for s in &r.shapes {
        t.row(vec![
            s.shape.describe().to_owned(),
            show(s.ms, 0),
            s.vs_flannel.map_or("n/a".into(), |x| format!("{x:.2}")),
        ]);
    }
    section.table(t);
    let mut g = Table::new(&[
        "routes (flannel's shape)",
        "ms (min / median / max)",
        "µs per route (median)",
    ]);
    for row in &r.growth {
        g.row(vec![
            row.routes.to_string(),
            show(row.ms, 1),
            row.us_per_route.map_or("n/a".into(), |x| format!("{x:.1}")),
        ]);
    }
    section.table(g);
    section.text(
        "The cost per route grows with the number of routes already there: that is the \
         `fib_info` hash bucket shared by routes that differ only in their gateway (see \
         the module doc of `crates/weft-bench/src/measure/routes.rs`). IPv6 routes have no shared \
         `fib_info` and stay linear.",
    );
    section
}
