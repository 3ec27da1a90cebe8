//! Bad data never reaches the kernel (issue 11, "Hostile input"): a lab is
//! brought up, node1's routes, neighbours, FDB, links and iptables rules
//! are recorded, then every lease of the hostile corpus
//! (`weft-core/tests/fixtures/hostile/leases/`) that the lab's own config
//! refuses is written straight into the lab's lease store, as a compromised
//! node or a careless `etcdctl put` would. node1's agent must report each
//! one skipped for the reason the pure screening gives, warn once per
//! lease, keep running, and leave the kernel byte for byte as it was; the
//! pod matrix must still pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../weft-core/tests/fixtures/hostile/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::agent::{kube_node, metric, wait_for_a_full_pass};
use common::{TestLab, kube_api, require_root, wait_until};
use serde_json::Value;
use weft_core::etcd_key::{self, DEFAULT_PREFIX};
use weft_core::lease::LeaseSubnets;
use weft_core::netconf;
use weft_core::peer;
use weft_lab::{Backend, IpFamily};
use weft_store::kv::{Kv, Ttl};
use weft_store::local::LocalKv;

/// What bad data could change on a node, in a form stable over time:
/// volatile parts (ARP entries aging, FDB entries a bridge learned from
/// traffic, rule counters, iptables-save's timestamp) are dropped; weft's
/// own neighbours and FDB entries are permanent and stay in.
fn kernel_state(lab: &TestLab, node: &str) -> BTreeMap<&'static str, String> {
    let run = |argv: &[&str]| lab.ok(node, argv);
    let keep = |text: String, pred: &dyn Fn(&str) -> bool| -> String {
        text.lines()
            .filter(|l| pred(l))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let rules = |text: String| -> String {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
                (true, Some(i)) => format!("{} [0:0]\n", &l[..i]),
                _ => format!("{l}\n"),
            })
            .collect()
    };
    let mut s = BTreeMap::new();
    s.insert("ip route", run(&["ip", "route", "show", "table", "all"]));
    s.insert(
        "ip -6 route",
        run(&["ip", "-6", "route", "show", "table", "all"]),
    );
    s.insert(
        "ip neigh (permanent)",
        run(&["ip", "neigh", "show", "nud", "permanent"]),
    );
    s.insert(
        "ip -6 neigh (permanent)",
        run(&["ip", "-6", "neigh", "show", "nud", "permanent"]),
    );
    s.insert(
        "bridge fdb (permanent, static)",
        keep(run(&["bridge", "fdb", "show"]), &|l| {
            l.contains("permanent") || l.contains("static")
        }),
    );
    // Not `-d`: its bridge timers tick.
    s.insert("ip link", run(&["ip", "link", "show"]));
    s.insert("iptables-save", rules(run(&["iptables-save"])));
    s.insert("ip6tables-save", rules(run(&["ip6tables-save"])));
    s
}

/// The corpus names our own subnet 10.244.1.0/24 (fd00:10:244:1::/64) and
/// an older peer's 10.244.2.0/24 (fd00:10:244:2::/64); in the lab those
/// are node1's and node2's, whichever each got.
fn substitute(key: &str, own: &LeaseSubnets, peer: &LeaseSubnets) -> String {
    let pairs = [
        ("10.244.1.0", own.v4.map(|n| n.network().to_string())),
        ("10.244.2.0", peer.v4.map(|n| n.network().to_string())),
        ("fd00:10:244:1::", own.v6.map(|n| n.network().to_string())),
        ("fd00:10:244:2::", peer.v6.map(|n| n.network().to_string())),
    ];
    // Through placeholders, so that swapping node1's and node2's subnets
    // works.
    let mut out = key.to_owned();
    for (i, (from, _)) in pairs.iter().enumerate() {
        out = out.replace(from, &format!("\u{1}{i}\u{1}"));
    }
    for (i, (from, to)) in pairs.iter().enumerate() {
        out = out.replace(&format!("\u{1}{i}\u{1}"), to.as_deref().unwrap_or(from));
    }
    out
}

fn subnets_of(lab: &TestLab, node: &str) -> LeaseSubnets {
    let mut s = LeaseSubnets::default();
    for net in &lab.lab().node(node).unwrap().subnets {
        match net {
            ipnet::IpNet::V4(n) => s.v4 = Some(*n),
            ipnet::IpNet::V6(n) => s.v6 = Some(*n),
        }
    }
    s
}

fn run(name: &str, family: IpFamily) {
    let lab = TestLab::up_with(name, Backend::Vxlan, |spec| {
        spec.nodes = 2;
        spec.ip_family = family;
        spec.agent_args = vec!["--healthz-port=8081".into()];
        // Both nodes inside 10.244.1.0–10.244.2.0, the two subnets the
        // corpus names; every other corpus key is then free.
        let opts = &mut spec.net_conf_options;
        opts.insert("SubnetMin".into(), Value::from("10.244.1.0"));
        opts.insert("SubnetMax".into(), Value::from("10.244.2.0"));
        if family == IpFamily::Dual {
            opts.insert("IPv6SubnetMin".into(), Value::from("fd00:10:244:1::"));
            opts.insert("IPv6SubnetMax".into(), Value::from("fd00:10:244:2::"));
        }
    });
    let state_dir = lab.lab().name().state_dir();
    let cfg =
        netconf::parse(&std::fs::read_to_string(state_dir.join("net-conf.json")).unwrap()).unwrap();
    let own = subnets_of(&lab, "node1");
    let peer_subnets = subnets_of(&lab, "node2");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let kv = LocalKv::open(state_dir.join("leases.db")).unwrap();
    let peer_key = etcd_key::lease_key(DEFAULT_PREFIX, &peer_subnets);
    let peer_value = rt.block_on(kv.get(&peer_key)).unwrap().unwrap().value;
    let peer_lease = corpus::decode(&etcd_key::subnet_key(&peer_subnets), &peer_value).unwrap();

    // What the agent must make of each case, from the pure screening with
    // the lab's own config: only what it refuses is written (a lease it
    // accepts would rightly change the kernel).
    let mut written: BTreeMap<String, (String, Vec<u8>, String)> = BTreeMap::new();
    let lab_config = match family {
        IpFamily::Dual => "dual",
        _ => "vxlan4",
    };
    for case in corpus::load_leases() {
        if case.name.starts_with("accept-") {
            continue;
        }
        let key = substitute(&case.key_str(), &own, &peer_subnets);
        let full = format!("{}{key}", etcd_key::subnets_dir(DEFAULT_PREFIX));
        assert_ne!(full, peer_key, "{} would overwrite node2", case.name);
        assert_ne!(
            full,
            etcd_key::lease_key(DEFAULT_PREFIX, &own),
            "{} would overwrite node1",
            case.name
        );
        let screened = peer::screen(
            &cfg,
            &own,
            [
                (peer_key.clone(), Ok(peer_lease.clone())),
                (full.clone(), corpus::decode(&key, &case.value)),
            ],
        );
        assert_eq!(screened.accepted[0].0, peer_key, "node2 must stay a peer");
        let Some(rejected) = screened.rejected.first() else {
            continue;
        };
        let kind = rejected.reason.kind().to_owned();
        if case.config == lab_config {
            assert_eq!(
                kind, case.expect,
                "{}: the lab config judges differently",
                case.name
            );
        }
        written.insert(full, (kind, case.value.clone(), case.name.clone()));
    }
    let same_config = corpus::load_leases()
        .iter()
        .filter(|c| c.config == lab_config && c.expect != "accept")
        .count();
    assert!(
        written.len() >= same_config,
        "only {} cases written",
        written.len()
    );

    let status = lab.lab().agent_status("node1").unwrap();
    assert!(status.view.skipped.is_empty(), "{:?}", status.view.skipped);
    let before = kernel_state(&lab, "node1");

    rt.block_on(async {
        for (key, (_, value, _)) in &written {
            kv.put(key, value, Ttl::Forever).await.unwrap();
        }
    });
    let start = Instant::now();
    let mut last = BTreeMap::new();
    wait_until(
        Duration::from_secs(60),
        "node1 to report every hostile lease skipped",
        || {
            let Ok(s) = lab.lab().agent_status("node1") else {
                return false;
            };
            last = s
                .view
                .skipped
                .iter()
                .map(|v| (v.id.clone(), v.reason.clone()))
                .collect();
            last.len() >= written.len()
        },
    );
    println!(
        "node1 skipped {} hostile leases {:?} after they were written",
        written.len(),
        start.elapsed()
    );
    let mut wrong = Vec::new();
    for (key, (kind, _, name)) in &written {
        match last.get(key) {
            Some(got) if got == kind => {}
            got => wrong.push(format!("{name} ({key:?}): expected {kind}, got {got:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(last.len(), written.len(), "{last:?}");

    // Any pass the bad data could have influenced has run before the
    // kernel is compared.
    wait_for_a_full_pass(&lab, "node1");
    let after = kernel_state(&lab, "node1");
    for (what, text) in &before {
        assert_eq!(
            text, &after[what],
            "{what} on node1 changed after the hostile leases were written"
        );
    }

    // Still running, still serving pods, and each lease warned about once.
    for node in ["node1", "node2"] {
        let s = lab.lab().agent_status(node).unwrap();
        assert!(s.ready, "{node} is no longer ready");
        assert_eq!(s.view.peers.len(), 1, "{node}: {:?}", s.view.peers);
    }
    let log =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("weftd.log")).unwrap();
    assert!(!log.contains("panicked"), "the agent panicked:\n{log}");
    for (key, (_, _, name)) in &written {
        let warnings = log.matches(&format!("peer lease {key} skipped")).count();
        assert_eq!(warnings, 1, "{name}: warned {warnings} times");
    }
    lab.assert_matrix();
}

#[test]
fn hostile_leases_leave_the_kernel_untouched_ipv4() {
    require_root();
    run("hostile4", IpFamily::Ipv4);
}

#[test]
fn hostile_leases_leave_the_kernel_untouched_dual_stack() {
    require_root();
    run("hostile6", IpFamily::Dual);
}

/// docs/SECURITY.md: the status socket shows leases and the node's view,
/// so only root may connect to it.
#[test]
fn status_socket_is_root_only() {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
    require_root();
    let lab = TestLab::up_with("hostsock", Backend::HostGw, |spec| {
        spec.nodes = 2;
        spec.pods_per_node = 0;
    });
    for node in ["node1", "node2"] {
        let sock = lab.lab().node(node).unwrap().dir.join("weftd.sock");
        let meta = std::fs::symlink_metadata(&sock).unwrap();
        assert!(
            meta.file_type().is_socket(),
            "{} is not a socket",
            sock.display()
        );
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{} has mode {:o}",
            sock.display(),
            meta.permissions().mode() & 0o777
        );
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "{} not root's",
            sock.display()
        );
        // And it still answers root.
        assert!(lab.lab().agent_status(node).unwrap().ready);
    }
}

/// Issue 11 with the Kubernetes store: hostile node annotations and
/// podCIDRs, registered next to one good extra node, never reach node1's
/// kernel; the good one does, the skips are counted, pods still talk.
#[test]
fn hostile_kube_nodes_leave_the_kernel_untouched() {
    require_root();
    let lab = TestLab::up_with("hostkube", Backend::Vxlan, |spec| {
        spec.store = weft_lab::StoreKind::Kube;
        spec.agent_args = vec!["--healthz-port=8081".into()];
    });
    let own = lab.subnet("node1");
    let peer_net = lab.subnet("node2");
    let inside_peer = format!("{}/25", peer_net.split('/').next().unwrap());
    // (name, public IP, VTEP MAC, podCIDR, spoiler)
    type Spoil = Box<dyn FnOnce(&mut serde_json::Map<String, Value>)>;
    let hostile: Vec<(&str, &str, &str, Option<&str>, Spoil)> = vec![
        (
            "bad-data",
            "192.0.2.81",
            "02:42:00:00:00:81",
            None,
            Box::new(|a| {
                a.insert(
                    "flannel.alpha.coreos.com/backend-data".into(),
                    Value::from("{not json"),
                );
            }),
        ),
        (
            "bad-overlap",
            "192.0.2.82",
            "02:42:00:00:00:82",
            Some(&inside_peer),
            Box::new(|_| {}),
        ),
        (
            "bad-outside",
            "192.0.2.83",
            "02:42:00:00:00:83",
            Some("10.99.0.0/24"),
            Box::new(|_| {}),
        ),
        (
            "bad-ip",
            "192.0.2.84",
            "02:42:00:00:00:84",
            None,
            Box::new(|a| {
                a.insert(
                    "flannel.alpha.coreos.com/public-ip".into(),
                    Value::from("not-an-ip"),
                );
            }),
        ),
        // Every node keeps the older of two nodes claiming one podCIDR,
        // by creationTimestamp (one-second resolution) and then by name: a
        // name after node1's keeps node1 the holder even when the lab came
        // up within the same second as this node.
        (
            "zz-bad-own",
            "192.0.2.85",
            "02:42:00:00:00:85",
            Some(&own),
            Box::new(|_| {}),
        ),
    ];
    let before = kernel_state(&lab, "node1");
    let skipped_before = metric(&lab, "node1", "weft_peer_leases_skipped_total");
    let count = hostile.len();
    for (name, ip, mac, cidr, spoil) in hostile {
        let body = kube_node(name, ip, mac, cidr, spoil);
        let (code, reply) = kube_api(&lab, "POST", "/weft-test/v1/nodes", &body);
        assert!(code < 300, "{name}: {code} {reply}");
    }
    let good = kube_node("good9", "192.0.2.9", "02:42:00:00:00:09", None, |_| {});
    let (code, reply) = kube_api(&lab, "POST", "/weft-test/v1/nodes", &good);
    assert!(code < 300, "{code} {reply}");
    let (code, reply) = kube_api(&lab, "GET", "/api/v1/nodes/good9", "");
    assert_eq!(code, 200, "{reply}");
    let good_cidr = serde_json::from_str::<Value>(&reply).unwrap()["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_owned();
    let good_gw = good_cidr.split('/').next().unwrap().to_owned();

    // The good node is programmed: route, neighbour and FDB entry.
    wait_until(Duration::from_secs(30), "node1 to program good9", || {
        lab.ok("node1", &["ip", "route"]).contains(&good_cidr)
            && lab
                .ok("node1", &["ip", "neigh", "show", "dev", "flannel.1"])
                .contains("02:42:00:00:00:09")
            && lab
                .ok("node1", &["bridge", "fdb", "show", "dev", "flannel.1"])
                .contains("dst 192.0.2.9 ")
    });
    wait_until(
        Duration::from_secs(30),
        "node1 to count every hostile node skipped",
        || metric(&lab, "node1", "weft_peer_leases_skipped_total") >= skipped_before + count as f64,
    );
    wait_for_a_full_pass(&lab, "node1");

    // Nothing of the hostile nodes, and nothing else changed but good9's
    // entries.
    let after = kernel_state(&lab, "node1");
    for (what, text) in &after {
        for bad in [
            "192.0.2.81",
            "192.0.2.82",
            "192.0.2.83",
            "192.0.2.84",
            "192.0.2.85",
            // Whole MACs: a fragment such as ":83 " also matched the
            // random IPv6 multicast MAC of eth0 (33:33:ff:..:..:83).
            "02:42:00:00:00:81",
            "02:42:00:00:00:82",
            "02:42:00:00:00:83",
            "02:42:00:00:00:84",
            "02:42:00:00:00:85",
            "10.99.0.0",
            &inside_peer,
        ] {
            assert!(
                !text.contains(bad),
                "{what} on node1 holds {bad:?} of a hostile node:\n{text}"
            );
        }
        let without_good: String = text
            .lines()
            .filter(|l| {
                !l.contains(&good_cidr)
                    && !l.contains("02:42:00:00:00:09")
                    && !l.contains("192.0.2.9 ")
                    && l.split_whitespace().next() != Some(&good_gw)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let before_text: String = before[what].lines().map(|l| format!("{l}\n")).collect();
        assert_eq!(
            without_good, before_text,
            "{what} on node1 changed beyond good9's entries"
        );
    }
    let s = lab.lab().agent_status("node1").unwrap();
    assert!(s.ready, "node1 is no longer ready");
    let log =
        std::fs::read_to_string(lab.lab().node("node1").unwrap().dir.join("weftd.log")).unwrap();
    assert!(!log.contains("panicked"), "the agent panicked:\n{log}");
    lab.assert_matrix();
}
