//! A three-member etcd losing members (issue 23): agents hold pods and
//! carry a 10 ms ping and a TCP stream between pods on different nodes
//! while the leader is killed, a member is cut off, quorum is lost for
//! 30 s, and every member is restarted in turn. Each test prints what it
//! observed (`--nocapture`); docs/RELIABILITY.md records the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::agent::metric;
use common::load::load_while;
use common::{TestLab, output_ok, require_root, wait_until};
use weft_lab::{Backend, Lab, StoreKind};

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const SUBNETS: &str = "/coreos.com/network/subnets/";

fn up(name: &str, ttl_secs: u32) -> TestLab {
    TestLab::up_with(name, Backend::Vxlan, |spec| {
        spec.store = StoreKind::Etcd;
        spec.etcd_members = 3;
        spec.agent_args = vec![
            "--healthz-port=8081".into(),
            format!("--subnet-lease-ttl={ttl_secs}"),
        ];
    })
}

/// `etcdctl` from the underlay against `members` (all when empty).
fn etcdctl_on(lab: &TestLab, members: &[&str], args: &[&str]) -> std::process::Output {
    let endpoints: Vec<String> = lab
        .lab()
        .etcd_members()
        .iter()
        .filter(|m| members.is_empty() || members.contains(&m.name.as_str()))
        .map(|m| m.client_url.clone())
        .collect();
    let endpoints = format!("--endpoints={}", endpoints.join(","));
    let mut argv = vec!["etcdctl", &endpoints, "--command-timeout=1s"];
    argv.extend_from_slice(args);
    lab.run("underlay", &argv)
}

/// Runs an etcdctl command until it succeeds (an election may be under
/// way); its stdout.
fn etcdctl_until_ok(lab: &TestLab, members: &[&str], args: &[&str]) -> String {
    let mut out = None;
    wait_until(
        Duration::from_secs(30),
        &format!("etcdctl {args:?}"),
        || {
            let o = etcdctl_on(lab, members, args);
            let ok = o.status.success();
            out = Some(o);
            ok
        },
    );
    String::from_utf8_lossy(&out.unwrap().stdout).into_owned()
}

/// A fake peer lease (a valid vxlan node at 192.0.2.77) for `subnet`.
fn put_peer(lab: &TestLab, members: &[&str], subnet: &str) {
    put_peer_within(lab, members, subnet, "1s");
}

/// [`put_peer`], each attempt given `timeout` (etcdctl's last
/// `--command-timeout` wins): a short one lands soon after an election.
fn put_peer_within(lab: &TestLab, members: &[&str], subnet: &str, timeout: &str) {
    let key = format!("{SUBNETS}{}", subnet.replace('/', "-"));
    let value = r#"{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:42:00:00:00:77"}}"#;
    let timeout = format!("--command-timeout={timeout}");
    etcdctl_until_ok(lab, members, &[&timeout, "put", &key, value]);
}

/// The subnets the store holds leases for.
fn store_subnets(lab: &TestLab, members: &[&str]) -> BTreeSet<String> {
    etcdctl_until_ok(lab, members, &["get", "--prefix", SUBNETS, "--keys-only"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix(SUBNETS))
        .map(|s| s.replacen('-', "/", 1))
        .collect()
}

/// The peer subnets `node` routes over flannel.1.
fn routed(lab: &TestLab, node: &str) -> BTreeSet<String> {
    lab.ok(node, &["ip", "-4", "route", "show", "dev", "flannel.1"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn routed_everywhere(lab: &TestLab, subnet: &str) -> bool {
    NODES.iter().all(|n| routed(lab, n).contains(subnet))
}

/// Every node routes exactly the store's leases but its own.
fn assert_peer_sets_match_the_store(lab: &TestLab) {
    let store = store_subnets(lab, &[]);
    for node in NODES {
        let own = lab.subnet(node);
        let want: BTreeSet<String> = store.iter().filter(|s| **s != own).cloned().collect();
        wait_until(
            Duration::from_secs(20),
            &format!("{node}'s peers to equal the store's {want:?}"),
            || routed(lab, node) == want,
        );
    }
}

/// Each node's own lease key and its modification revision.
fn own_lease_revisions(lab: &TestLab) -> Vec<(String, i64)> {
    NODES
        .iter()
        .map(|n| {
            let key = format!("{SUBNETS}{}", lab.subnet(n).replace('/', "-"));
            let fields = etcdctl_until_ok(lab, &[], &["get", &key, "-w", "fields"]);
            let rev = fields
                .lines()
                .find_map(|l| l.strip_prefix("\"ModRevision\" : "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no lease {key} in etcd: {fields}"));
            (key, rev)
        })
        .collect()
}

/// How many etcd leases exist: one per node when renewals leave nothing
/// behind (a doubled renewal would leave two).
fn etcd_leases(lab: &TestLab) -> usize {
    let out = etcdctl_until_ok(lab, &[], &["lease", "list"]);
    out.lines()
        .next()
        .and_then(|l| l.strip_prefix("found "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("etcdctl lease list: {out}"))
}

/// The member holding most of the agents' watch streams (etcd's own
/// gauge on its /metrics), so that a fault there is one the agents feel.
fn member_with_watches(lab: &TestLab) -> String {
    let members = lab.lab().etcd_members().to_vec();
    members
        .iter()
        .map(|m| {
            let url = format!("{}/metrics", m.client_url);
            let text = lab.ok("underlay", &["curl", "-s", "--max-time", "2", &url]);
            let streams: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watch_stream_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0);
            (streams as u64, m.name.clone())
        })
        .max()
        .map(|(_, name)| name)
        .unwrap()
}

/// Makes `member` the leader (`etcdctl move-leader`).
fn move_leader(lab: &TestLab, member: &str) {
    if lab.lab().etcd_leader().unwrap().as_deref() == Some(member) {
        return;
    }
    let list = etcdctl_until_ok(lab, &[], &["member", "list"]);
    let id = list
        .lines()
        .find(|l| l.split(", ").nth(2) == Some(member))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("{member} is not in {list}"))
        .to_owned();
    etcdctl_until_ok(lab, &[], &["move-leader", &id]);
    wait_until(Duration::from_secs(10), "the leadership to move", || {
        lab.lab().etcd_leader().unwrap().as_deref() == Some(member)
    });
}

/// Lines of `node`'s log that contain every one of `words`.
fn log_lines(lab: &TestLab, node: &str, words: &[&str]) -> usize {
    let log = lab.lab().node(node).unwrap().dir.join("weftd.log");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// `weft lab store ARGS --name LAB`, as an operator runs it; its stdout.
fn weft_lab_store(lab: &str, args: &[&str]) -> String {
    let out = output_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["lab", "store"])
            .args(args)
            .args(["--name", lab]),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn median(mut xs: Vec<Duration>) -> (Duration, Duration, Duration) {
    xs.sort();
    (xs[0], xs[xs.len() / 2], xs[xs.len() - 1])
}

#[test]
fn leader_killed_agents_fail_over_and_lose_nothing() {
    require_root();
    // A 10 s lease is renewed every 5 s: a renewal is due in every round.
    let lab = up("ha-lead", 10);
    let name = lab.lab().name().as_str().to_owned();
    let (mut elections, mut failovers, mut lags) = (Vec::new(), Vec::new(), Vec::new());
    let load = load_while(&lab, 30, || {
        let mut other = Lab::open(&name).unwrap();
        for round in 0..3u32 {
            // The leader is also where some agent's watch runs.
            move_leader(&lab, &member_with_watches(&lab));
            let before = own_lease_revisions(&lab);
            let killed_at = Instant::now();
            let leader = other.kill_etcd_leader().unwrap();
            let subnet = format!("10.244.{}.0/24", 240 + round);
            // Written during the election, through the survivors, retried
            // until the new leader takes it.
            let survivors: Vec<&str> = ["etcd1", "etcd2", "etcd3"]
                .into_iter()
                .filter(|m| *m != leader)
                .collect();
            let (elected, written) = std::thread::scope(|s| {
                let writer = s.spawn(|| {
                    put_peer_within(&lab, &survivors, &subnet, "300ms");
                    killed_at.elapsed()
                });
                wait_until(Duration::from_secs(20), "a new leader", || {
                    other.etcd_leader().ok().flatten().is_some()
                });
                (killed_at.elapsed(), writer.join().unwrap())
            });
            elections.push(elected);
            wait_until(
                Duration::from_secs(30),
                "every agent to route a lease created during the election",
                || routed_everywhere(&lab, &subnet),
            );
            let failover = killed_at.elapsed();
            failovers.push(failover);
            lags.push(failover.saturating_sub(written));
            // The election and the write, then at most one retry of the
            // watch (its member died: it resumes on the next at once).
            assert!(
                failover < elected.max(written) + Duration::from_secs(1),
                "routed {failover:?} after the kill; leader elected after {elected:?}, the lease written after {written:?}"
            );
            wait_until(
                Duration::from_secs(20),
                "every agent's next renewal to land",
                || {
                    own_lease_revisions(&lab)
                        .iter()
                        .zip(&before)
                        .all(|((_, now), (_, then))| now > then)
                },
            );
            println!(
                "round {round}: killed leader {leader}; a new leader after {elected:?}; \
                 the lease put during the election landed after {written:?} and was routed by every agent after {failover:?}"
            );
            assert!(other.start_etcd_member(&leader).unwrap());
        }
    });
    load.assert_nothing_lost("the etcd leader killed three times");
    let (lo, mid, hi) = median(failovers);
    let (elo, emid, ehi) = median(elections);
    let (llo, lmid, lhi) = median(lags);
    println!(
        "failover (kill → a lease put during the election routed by every agent): min {lo:?}, median {mid:?}, max {hi:?}; \
         election (kill → a new leader): min {elo:?}, median {emid:?}, max {ehi:?}; \
         agents (lease landed → routed everywhere): min {llo:?}, median {lmid:?}, max {lhi:?}"
    );
    // Election (1 s here) plus one retry of the watch and the reconcile.
    assert!(hi < Duration::from_secs(5), "failover took {hi:?}");
    wait_until(Duration::from_secs(10), "one etcd lease per node", || {
        etcd_leases(&lab) == NODES.len()
    });
    assert_peer_sets_match_the_store(&lab);
    lab.assert_matrix();
}

#[test]
fn partitioned_member_is_abandoned_and_nothing_is_missed() {
    require_root();
    let lab = up("ha-part", 60);
    put_peer(&lab, &[], "10.244.250.0/24");
    wait_until(Duration::from_secs(20), "the first fake peer", || {
        routed_everywhere(&lab, "10.244.250.0/24")
    });
    let cut = member_with_watches(&lab);
    let others: Vec<String> = lab
        .lab()
        .etcd_members()
        .iter()
        .map(|m| m.name.clone())
        .filter(|m| *m != cut)
        .collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let name = lab.lab().name().as_str().to_owned();
    let mut detected = Duration::ZERO;
    let load = load_while(&lab, 25, || {
        weft_lab_store(&name, &["partition", &cut]);
        let cut_at = Instant::now();
        // While it is cut off: one lease comes, one goes.
        put_peer(&lab, &others, "10.244.251.0/24");
        let key = format!("{SUBNETS}10.244.250.0-24");
        etcdctl_until_ok(&lab, &others, &["del", &key]);
        wait_until(
            Duration::from_secs(30),
            "every agent to follow the store without the cut-off member",
            || {
                NODES.iter().all(|n| {
                    let r = routed(&lab, n);
                    r.contains("10.244.251.0/24") && !r.contains("10.244.250.0/24")
                })
            },
        );
        detected = cut_at.elapsed();
        println!("{cut} cut off: every agent followed the other members {detected:?} later");
    });
    load.assert_nothing_lost("an etcd member cut off");
    let status = weft_lab_store(&name, &["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(cut.as_str()) && l.contains("running  partitioned")),
        "{status}"
    );
    weft_lab_store(&name, &["heal", &cut]);
    let status = weft_lab_store(&name, &["status"]);
    assert_eq!(status.matches("running  connected").count(), 3, "{status}");
    put_peer(&lab, &[], "10.244.252.0/24");
    wait_until(
        Duration::from_secs(20),
        "a lease made after the heal",
        || routed_everywhere(&lab, "10.244.252.0/24"),
    );
    assert_peer_sets_match_the_store(&lab);
    // keepalive (6 s + 3 s) and a watch retry, on a loaded machine.
    assert!(detected < Duration::from_secs(20), "took {detected:?}");
}

#[test]
fn quorum_lost_for_30s_keeps_the_dataplane_then_resumes() {
    require_root();
    let lab = up("ha-quorum", 60);
    let before: Vec<BTreeSet<String>> = NODES.iter().map(|n| routed(&lab, n)).collect();
    let warned_before: Vec<usize> = NODES
        .iter()
        .map(|n| log_lines(&lab, n, &["WARN", "lease watch"]))
        .collect();
    let name = lab.lab().name().as_str().to_owned();
    let store_available_everywhere = |value: f64| {
        NODES
            .iter()
            .all(|n| metric(&lab, n, "weft_store_available") == value)
    };
    let load = load_while(&lab, 36, || {
        let mut other = Lab::open(&name).unwrap();
        let lost_at = Instant::now();
        weft_lab_store(&name, &["kill", "etcd1"]);
        weft_lab_store(&name, &["kill", "etcd2"]);
        wait_until(
            Duration::from_secs(15),
            "every agent to report the store unavailable",
            || store_available_everywhere(0.0),
        );
        println!(
            "outage reported {:?} after quorum was lost",
            lost_at.elapsed()
        );
        let status = common::agent::weft_status(&lab, "node1", false);
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(status.contains("store:   UNAVAILABLE"), "{status}");
        println!("weft status on node1 during the outage:\n{status}");
        // The outage is the point: quorum stays lost for 30 s.
        std::thread::sleep(Duration::from_secs(30).saturating_sub(lost_at.elapsed()));
        for (node, routes) in NODES.iter().zip(&before) {
            assert_eq!(&routed(&lab, node), routes, "{node} changed its routes");
        }
        other.start_etcd_member("etcd1").unwrap();
        other.start_etcd_member("etcd2").unwrap();
    });
    load.assert_nothing_lost("etcd quorum lost for 30 s");
    let back = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "every agent to follow the store again",
        || store_available_everywhere(1.0),
    );
    println!(
        "agents followed the store again {:?} after quorum returned",
        back.elapsed()
    );
    put_peer(&lab, &[], "10.244.250.0/24");
    wait_until(
        Duration::from_secs(20),
        "a lease made after the outage",
        || routed_everywhere(&lab, "10.244.250.0/24"),
    );
    for (i, node) in NODES.iter().enumerate() {
        let warned = log_lines(&lab, node, &["WARN", "lease watch"]) - warned_before[i];
        assert_eq!(warned, 1, "{node} warned {warned} times about one outage");
        assert_eq!(
            metric(&lab, node, "weft_store_outages_total"),
            1.0,
            "{node}"
        );
    }
    assert_peer_sets_match_the_store(&lab);
}

#[test]
fn members_rolled_one_by_one_go_unnoticed() {
    require_root();
    let lab = up("ha-roll", 10);
    let name = lab.lab().name().as_str().to_owned();
    let load = load_while(&lab, 20, || {
        let mut other = Lab::open(&name).unwrap();
        for (i, member) in ["etcd1", "etcd2", "etcd3"].into_iter().enumerate() {
            other.kill_etcd_member(member).unwrap();
            assert!(other.start_etcd_member(member).unwrap());
            let subnet = format!("10.244.{}.0/24", 240 + i);
            put_peer(&lab, &[], &subnet);
            wait_until(
                Duration::from_secs(20),
                "a lease made after a restart",
                || routed_everywhere(&lab, &subnet),
            );
            println!("{member} restarted; a new lease routed everywhere");
        }
    });
    load.assert_nothing_lost("every etcd member restarted in turn");
    wait_until(Duration::from_secs(10), "one etcd lease per node", || {
        etcd_leases(&lab) == NODES.len()
    });
    for node in NODES {
        assert_eq!(metric(&lab, node, "weft_store_available"), 1.0, "{node}");
    }
    assert_peer_sets_match_the_store(&lab);
    lab.assert_matrix();
}
