//! The etcd failover section: a three-member etcd losing its leader or a
//! member, and how long the agents take to route a new lease.

use super::markdown::{Section, Table, summary_row};
use crate::results::EtcdHa;

pub fn section(e: &EtcdHa) -> Section {
    let mut sec = Section::new("etcd failover: a member lost");
    sec.text(format!(
        "A lab of {} nodes (vxlan) on a {}-member etcd, every agent given every endpoint \
         (`weft lab up --store etcd --etcd-members {}`). Leader killed: the leader is first moved \
         to a member that carries agents' watches, then SIGKILLed, and a lease is put through the \
         survivors at once, retried until the new leader takes it; the baseline is the election \
         itself (from the kill until a running member reports a leader), which bounds what any \
         client can do. Member cut off: the member carrying agents' watches loses its underlay \
         port (its process runs on) and a lease is put through the others. docs/RELIABILITY.md \
         says how the agent chooses and leaves members.",
        e.nodes, e.members, e.members
    ));
    let mut t = Table::new(&["from the fault to", "min / median / max"]);
    for (to, value, digits) in [
        (
            "a new leader, s (baseline: etcd's election)",
            e.election_s,
            2,
        ),
        ("the lease routed on every node, s", e.routed_s, 2),
        (
            "(the agents' share: etcd taking the lease → the last node routing it, ms)",
            e.agents_ms,
            1,
        ),
        (
            "member cut off → a lease routed on every node, s (HTTP/2 keepalive 6 s + 3 s)",
            e.cut_off_s,
            2,
        ),
    ] {
        t.row(summary_row(to, &[(value, digits)]));
    }
    sec.table(t);
    sec
}
