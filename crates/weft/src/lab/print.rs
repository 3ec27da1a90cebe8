//! What `weft lab` prints for people: the summary after `up` and the
//! matrix of `check`. Machine-readable output is `check --json` only.
//!
//! Everything is rendered into a string and written at once by the caller,
//! which ignores a closed pipe (`weft lab up | head`): once the lab is up,
//! a reader that stopped early must not turn success into a panic.

use std::fmt::Write as _;

use weft_lab::{Backend, CheckReport, Family, Lab, PairResult};

/// After `up`: what exists, and what to type next.
pub fn up_summary(lab: &Lab) -> String {
    let mut o = String::new();
    let state = lab.state();
    let name = lab.name();
    let flag = name.flag();
    let _ = writeln!(
        o,
        "lab {:?} is up: {} nodes, backend {}, store {}, pod network {}",
        name.as_str(),
        state.nodes.len(),
        state.backend,
        state.store.describe(),
        state.ip_family.as_str()
    );
    o.push('\n');
    let wireguard = state.backend == Backend::Wireguard;
    let clouds = state.clouds > 0;
    let mut rows = vec![row(["node", "netns", "underlay", "subnet", "agent"])];
    if clouds {
        rows[0].insert(3, "public (1:1 NAT)".to_owned());
        rows[0].insert(2, "cloud".to_owned());
    }
    if wireguard {
        rows[0].push("wireguard".to_owned());
    }
    for n in &state.nodes {
        let mut r = vec![
            n.name.clone(),
            n.netns.clone(),
            n.underlay_ip.to_string(),
            join(&n.subnets),
            n.pid
                .map_or_else(|| "not running".to_owned(), |p| format!("pid {p}")),
        ];
        if clouds {
            r.insert(
                3,
                n.public_ip
                    .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            );
            r.insert(2, n.cloud.map_or_else(|| "-".to_owned(), |c| c.to_string()));
        }
        if wireguard {
            r.push(wireguard_path(lab, &n.name));
        }
        rows.push(r);
    }
    o.push_str(&table(&rows));
    if !state.pods.is_empty() {
        o.push('\n');
        let mut rows = vec![row(["pod", "node", "netns", "address"])];
        for p in &state.pods {
            rows.push(vec![
                p.name.clone(),
                p.node.clone(),
                p.netns.clone(),
                join(&p.addresses),
            ]);
        }
        o.push_str(&table(&rows));
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "underlay: netns {}, bridge {} {}/24, outside address {}",
        state.underlay.netns, state.underlay.bridge, state.underlay.gateway, state.underlay.outside
    );
    if state.ip_family.has_v6() {
        let _ = writeln!(
            o,
            "          IPv6: bridge {}/{}, outside address {}, node i at 2001:db8::i",
            weft_lab::names::UNDERLAY_GATEWAY_V6,
            weft_lab::names::UNDERLAY_V6_PREFIX_LEN,
            weft_lab::names::OUTSIDE_IP_V6
        );
    }
    let _ = writeln!(
        o,
        "files:    {}/ (lab.json; per node: subnet.env, weftd.log)",
        name.state_dir().display()
    );
    if let Some(image) = &state.image {
        let _ = writeln!(
            o,
            "agents:   containers of {image} (podman, runc): podman ps --filter label=weft-lab={name}"
        );
    }
    o.push('\n');
    let _ = writeln!(o, "next:");
    let first_pod = state.pods.first();
    let other_pod = state
        .pods
        .iter()
        .find(|p| first_pod.is_some_and(|f| f.node != p.node))
        .or_else(|| state.pods.get(1));
    let mut hints = vec![(
        format!("weft lab check{flag}"),
        "ping and TCP between every pair of pods",
    )];
    if let (Some(a), Some(b)) = (first_pod, other_pod)
        && let Some(ip) = b.address(Family::V4).or_else(|| b.address(Family::V6))
    {
        hints.push((
            format!("weft lab exec{flag} {} -- ping -c 3 {ip}", a.name),
            "from one pod to another",
        ));
    }
    if let Some(n) = state.nodes.first() {
        hints.push((
            format!("weft lab exec{flag} {} -- ip route", n.name),
            "look around a node",
        ));
        hints.push((
            format!("ip netns exec {} bash", n.netns),
            "a shell on a node",
        ));
        hints.push((
            format!("weft lab restart{flag} {}", n.name),
            "restart a node's agent",
        ));
    }
    hints.push((format!("weft lab down{flag}"), "remove everything"));
    let width = hints.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, what) in hints {
        let _ = writeln!(o, "  {command:<width$}   # {what}");
    }
    o
}

/// After `check`: one matrix per family, then every failure with its
/// reason, and notes that keep the verdict honest.
pub fn check_matrix(lab: &Lab, report: &CheckReport) -> String {
    let mut o = String::new();
    let pods: Vec<&str> = lab.pods().iter().map(|p| p.name.as_str()).collect();
    if report.pairs.is_empty() {
        o.push_str("nothing to check: the lab needs at least two pods\n");
        return o;
    }
    for family in Family::ALL {
        let pairs: Vec<&PairResult> = report.pairs.iter().filter(|p| p.family == family).collect();
        if pairs.is_empty() {
            continue;
        }
        let label = serde_json::to_value(family)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut rows = vec![
            std::iter::once(format!("{label}: from \\ to"))
                .chain(pods.iter().map(|p| (*p).to_owned()))
                .collect::<Vec<_>>(),
        ];
        for from in &pods {
            let mut r = vec![(*from).to_owned()];
            for to in &pods {
                let cell = pairs
                    .iter()
                    .find(|p| p.from == *from && p.to == *to)
                    .map_or("-", |p| cell(p));
                r.push(cell.to_owned());
            }
            rows.push(r);
        }
        o.push_str(&table(&rows));
        o.push('\n');
    }
    let passed = report.pairs.iter().filter(|p| p.icmp && p.tcp).count();
    let _ = writeln!(
        o,
        "{passed}/{} pairs pass (ICMP and TCP); backend {}",
        report.pairs.len(),
        lab.state().backend
    );
    if lab.state().clouds > 0 {
        let nodes: Vec<String> = lab
            .nodes()
            .iter()
            .map(|n| {
                let public = n
                    .public_ip
                    .map_or_else(|| "-".to_owned(), |p| p.to_string());
                format!("{} {} (public {public})", n.name, n.underlay_ip)
            })
            .collect();
        let _ = writeln!(o, "clouds: {}", nodes.join(", "));
    }
    if lab.state().backend == Backend::Wireguard {
        let paths: Vec<String> = lab
            .nodes()
            .iter()
            .map(|n| format!("{} {}", n.name, wireguard_path(lab, &n.name)))
            .collect();
        let _ = writeln!(o, "wireguard: {}", paths.join(", "));
    }
    let failed: Vec<&PairResult> = report.pairs.iter().filter(|p| !(p.icmp && p.tcp)).collect();
    if !failed.is_empty() {
        o.push('\n');
        let _ = writeln!(o, "failures:");
        for p in &failed {
            let mut why = Vec::new();
            if let Some(e) = &p.icmp_error {
                why.push(format!("icmp: {e}"));
            }
            if let Some(e) = &p.tcp_error {
                why.push(format!("tcp: {e}"));
            }
            let _ = writeln!(o, "  {} -> {}: {}", p.from, p.to, why.join("; "));
        }
    }
    notes(&mut o, lab, &failed);
    o
}

fn notes(o: &mut String, lab: &Lab, failed: &[&PairResult]) {
    let node_of = |pod: &str| lab.pod(pod).map(|p| p.node.clone()).unwrap_or_default();
    let cross_node_only = failed.iter().all(|p| node_of(&p.from) != node_of(&p.to));
    if !failed.is_empty() && cross_node_only && lab.state().backend == Backend::None {
        o.push('\n');
        let _ = writeln!(
            o,
            "note: backend none leases subnets but programs no routes between nodes, so pods on \
             different nodes cannot reach each other; every failure above is such a pair."
        );
    }
    for node in lab.nodes() {
        if !lab.agent_running(&node.name).unwrap_or(true) {
            let _ = writeln!(
                o,
                "note: the agent on {} is not running (`weft lab restart{} {}` starts it)",
                node.name,
                lab.name().flag(),
                node.name
            );
        }
    }
}

/// Which WireGuard implementation the agent of `node` runs, `kernel` or
/// `userspace`, as its status socket says (the same fact as its
/// `weft_wireguard_path` metric).
fn wireguard_path(lab: &Lab, node: &str) -> String {
    match lab.agent_status(node) {
        Ok(status) => status
            .view
            .wireguard_path
            .unwrap_or_else(|| "no device yet".to_owned()),
        Err(_) => "unknown (no status)".to_owned(),
    }
}

fn cell(p: &PairResult) -> &'static str {
    match (p.icmp, p.tcp) {
        (true, true) => "ok",
        (false, true) => "no-icmp",
        (true, false) => "no-tcp",
        (false, false) => "FAIL",
    }
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Left-aligned columns separated by three spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths.get(c).copied().unwrap_or(0)))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![row(["a", "bbb"]), row(["cccc", "d"])];
        assert_eq!(table(&rows), "a      bbb\ncccc   d\n");
    }
}
