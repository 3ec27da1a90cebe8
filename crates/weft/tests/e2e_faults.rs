//! Faults survived (issue 11): each case holds one invariant — established
//! pod flows keep working, nothing is lost, and the agent recovers by
//! itself — measured with a ping every 10 ms and a TCP stream between
//! pods on different nodes. Each test prints what it observed (`--nocapture` shows it); the
//! figures are recorded in docs/RELIABILITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::load::load_while;
use common::scenarios::{routes, vxlan_entries};
use common::{TestLab, nftables_masq, require_root, wait_until};
use weft_core::etcd_key::{self, DEFAULT_PREFIX};
use weft_core::lease::LeaseSubnets;
use weft_lab::{Backend, Signal, StoreKind};
use weft_store::kv::{Kv, Ttl};
use weft_store::local::LocalKv;

fn etcdctl(lab: &TestLab, args: &[&str]) -> String {
    let mut argv = vec![
        "etcdctl",
        "--endpoints=http://192.0.2.250:2379",
        "--command-timeout=3s",
    ];
    argv.extend_from_slice(args);
    lab.ok("store", &argv)
}

/// A fake peer lease a test writes straight into etcd: a valid vxlan peer
/// at 192.0.2.77 whose route must appear on every node.
fn write_fake_peer(lab: &TestLab, subnet: &str) {
    let key = format!("/coreos.com/network/subnets/{}", subnet.replace('/', "-"));
    let value = r#"{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:42:00:00:00:77"}}"#;
    etcdctl(lab, &["put", &key, value]);
}

#[test]
fn etcd_down_for_60s_loses_nothing_then_catches_up() {
    require_root();
    let mut lab = TestLab::up_with("f-etcd", Backend::Vxlan, |spec| {
        spec.store = StoreKind::Etcd;
        spec.agent_args = vec!["--subnet-lease-ttl=20".into()];
    });
    let peer = lab.subnet("node2");
    let load = {
        let lab_ref = &lab;
        load_while(lab_ref, 62, || {
            // Stop etcd through a second handle on the same lab state: the
            // scoped ping thread only reads.
            let pid: u32 =
                std::fs::read_to_string(lab_ref.lab().name().state_dir().join("etcd.pid"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)
                .unwrap();
            // The outage is the point: etcd stays down for 60 s (longer than
            // the 20 s lease TTL), with a look at node1's routes half-way.
            std::thread::sleep(Duration::from_secs(30));
            assert!(
                lab_ref.ok("node1", &["ip", "route"]).contains(&peer),
                "a route was removed during the outage"
            );
            // The second half of the 60 s outage.
            std::thread::sleep(Duration::from_secs(30));
        })
    };
    load.assert_nothing_lost("etcd down for 60 s");
    let _ = lab.lab_mut().stop_store();
    let back = Instant::now();
    lab.lab_mut().start_store().unwrap();
    write_fake_peer(&lab, "10.244.250.0/24");
    wait_until(
        Duration::from_secs(30),
        "the watch to resume and program a new peer",
        || routes(&lab, "node1").contains("10.244.250.0/24"),
    );
    println!("watch resumed {:?} after etcd came back", back.elapsed());
    // Our own lease is still (or again) in etcd: renewed once it returned.
    let own = lab.subnet("node1").replace('/', "-");
    wait_until(
        Duration::from_secs(30),
        "node1's lease to be in etcd",
        || {
            etcdctl(
                &lab,
                &[
                    "get",
                    "--prefix",
                    "/coreos.com/network/subnets/",
                    "--keys-only",
                ],
            )
            .contains(&own)
        },
    );
    lab.assert_matrix();
}

#[test]
fn local_store_locked_for_60s_loses_nothing() {
    require_root();
    let lab = TestLab::up_with("f-lock", Backend::HostGw, |spec| {
        spec.agent_args = vec!["--subnet-lease-ttl=20".into()];
    });
    let db = lab.lab().name().state_dir().join("leases.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let own_key = {
        let own = lab.lab().node("node1").unwrap().subnets[0];
        etcd_key::lease_key(
            DEFAULT_PREFIX,
            &LeaseSubnets {
                v4: weft_core::prefix::as_v4(own),
                v6: None,
            },
        )
    };
    let own_rev = |kv: &LocalKv| {
        rt.block_on(kv.get(&own_key))
            .unwrap()
            .map(|e| e.mod_rev)
            .unwrap_or_else(|| panic!("node1's lease {own_key} is not in the store"))
    };
    let kv = LocalKv::open(&db).unwrap();
    let mut before_lock = 0;
    let load = load_while(&lab, 62, || {
        before_lock = own_rev(&kv);
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // The fault itself: the file stays locked for 60 s, three lease TTLs.
        std::thread::sleep(Duration::from_secs(60));
        conn.execute_batch("COMMIT").unwrap();
    });
    load.assert_nothing_lost("local store locked for 60 s");
    // Renewed: node1 wrote its lease again once the lock was gone (nothing
    // could write during it), so it did not lapse after its 20 s TTL.
    let released = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "node1 to renew its lease after the lock",
        || own_rev(&kv) > before_lock,
    );
    println!(
        "node1 renewed its lease {:?} after the lock ended",
        released.elapsed()
    );
    // Watching again: a node that joins on a new lease is routed to.
    let value =
        r#"{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}"#;
    rt.block_on(kv.put(
        &format!("{}10.244.250.0-24", etcd_key::subnets_dir(DEFAULT_PREFIX)),
        value.as_bytes(),
        Ttl::Forever,
    ))
    .unwrap();
    wait_until(
        Duration::from_secs(15),
        "node1 to route a lease added after the lock",
        || routes(&lab, "node1").contains("10.244.250.0/24 via 192.0.2.77"),
    );
    lab.assert_matrix();
    for node in ["node1", "node2", "node3"] {
        let s = lab.lab().agent_status(node).unwrap();
        assert!(s.ready, "{node} not ready after the lock");
    }
}

#[test]
fn vanished_node_expires_and_leaves_the_others() {
    require_root();
    let mut lab = TestLab::up_with("f-gone", Backend::Vxlan, |spec| {
        spec.agent_args = vec!["--subnet-lease-ttl=8".into()];
    });
    let gone = lab.subnet("node3");
    lab.lab_mut().kill_agent("node3", Signal::SIGKILL).unwrap();
    let netns = lab.lab().node_netns("node3").unwrap().to_owned();
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &netns])
        .status();
    let start = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "node3's lease to expire everywhere",
        || !routes(&lab, "node1").contains(&gone) && !routes(&lab, "node2").contains(&gone),
    );
    println!(
        "vanished node left the others {:?} after it died (TTL 8 s)",
        start.elapsed()
    );
    // Its neighbour entry (its subnet's network address, the VTEP's
    // address) and its FDB entry (dst its public IP) go with the route.
    let gw = gone.split('/').next().unwrap().to_owned();
    for node in ["node1", "node2"] {
        wait_until(
            Duration::from_secs(10),
            &format!("node3's neighbour and FDB entries to leave {node}"),
            || {
                let neigh = lab.ok(node, &["ip", "neigh", "show", "dev", "flannel.1"]);
                let fdb = lab.ok(node, &["bridge", "fdb", "show", "dev", "flannel.1"]);
                !neigh
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&gw))
                    && !fdb.contains("dst 192.0.2.3 ")
            },
        );
    }
    // The survivors still have each other's.
    assert!(
        lab.ok("node1", &["bridge", "fdb", "show", "dev", "flannel.1"])
            .contains("dst 192.0.2.2 "),
        "node1 lost node2's FDB entry"
    );
}

#[test]
fn thirty_agents_join_at_once_and_converge() {
    require_root();
    let lab = TestLab::up_with("f-30", Backend::HostGw, |spec| {
        spec.nodes = 30;
        spec.pods_per_node = 0;
    });
    let mut subnets: Vec<String> = (1..=30).map(|i| lab.subnet(&format!("node{i}"))).collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 30, "two agents got the same subnet");
    let start = Instant::now();
    for i in 1..=30 {
        let node = format!("node{i}");
        wait_until(
            Duration::from_secs(30),
            "every node to route to every other",
            || {
                let routes = lab.ok(&node, &["ip", "route", "show", "proto", "87"]);
                routes.lines().count() == 29
            },
        );
    }
    println!(
        "30 agents converged {:?} after all were ready",
        start.elapsed()
    );
}

#[test]
fn tampered_entries_and_rules_are_restored_within_a_resync() {
    require_root();
    let lab = TestLab::up("f-tamper", Backend::Vxlan, &["--ip-masq"]);
    let peer_gw = lab.subnet("node2").split('/').next().unwrap().to_owned();
    lab.ok(
        "node1",
        &[
            "ip",
            "neigh",
            "replace",
            &peer_gw,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ],
    );
    let fdb = lab.ok("node1", &["bridge", "fdb", "show", "dev", "flannel.1"]);
    let line = fdb
        .lines()
        .find(|l| l.contains("dst 192.0.2.3"))
        .unwrap()
        .to_owned();
    let mac = line.split_whitespace().next().unwrap().to_owned();
    lab.ok(
        "node1",
        &[
            "bridge",
            "fdb",
            "del",
            &mac,
            "dev",
            "flannel.1",
            "dst",
            "192.0.2.3",
            "self",
        ],
    );
    lab.ok("node1", &["iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"]);
    lab.ok("node1", &["iptables", "-F", "FLANNEL-FWD"]);
    let start = Instant::now();
    wait_until(
        Duration::from_secs(15),
        "the neighbour, FDB entry and rules to be restored",
        || {
            let (neigh, fdb) = vxlan_entries(&lab, "node1");
            let nat = lab.ok("node1", &["iptables-save", "-t", "nat"]);
            let filter = lab.ok("node1", &["iptables-save", "-t", "filter"]);
            !neigh.contains("02:00:00:00:00:99")
                && fdb.contains("dst 192.0.2.3")
                && nat.contains("-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000")
                && filter.contains("-A FLANNEL-FWD -s 10.244.0.0/16")
        },
    );
    println!("tampering repaired in {:?}", start.elapsed());
    lab.assert_matrix();
}

#[test]
fn deleted_nft_table_is_restored() {
    require_root();
    let lab = TestLab::up_with("f-nft", Backend::HostGw, nftables_masq);
    lab.ok("node1", &["nft", "delete", "table", "ip", "flannel-ipv4"]);
    wait_until(
        Duration::from_secs(15),
        "the nft table to be restored",
        || {
            lab.ok("node1", &["nft", "list", "ruleset"])
                .contains("table ip flannel-ipv4")
        },
    );
}

#[test]
fn node_cut_off_from_etcd_keeps_forwarding_and_catches_up() {
    require_root();
    let lab = TestLab::up_with("f-cut", Backend::Vxlan, |spec| {
        spec.store = StoreKind::Etcd;
    });
    // The store's rules dropping node1's packets: inserted (-I) or
    // deleted (-D). Both directions: etcd pushes watch events on its own.
    let cut_off = |op: &str| {
        lab.ok(
            "store",
            &["iptables", op, "INPUT", "-s", "192.0.2.1", "-j", "DROP"],
        );
        lab.ok(
            "store",
            &["iptables", op, "OUTPUT", "-d", "192.0.2.1", "-j", "DROP"],
        );
    };
    let load = load_while(&lab, 20, || {
        cut_off("-I");
        write_fake_peer(&lab, "10.244.251.0/24");
        wait_until(Duration::from_secs(10), "node2 to see the new peer", || {
            routes(&lab, "node2").contains("10.244.251.0/24")
        });
        // Negative window: node2 has the peer, and for 8 s more node1,
        // cut off, must not learn of it.
        std::thread::sleep(Duration::from_secs(8));
        assert!(
            !routes(&lab, "node1").contains("10.244.251.0/24"),
            "node1 cannot know yet"
        );
        cut_off("-D");
    });
    load.assert_nothing_lost("node1 cut off from etcd");
    let healed = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "node1 to catch up after the partition",
        || routes(&lab, "node1").contains("10.244.251.0/24"),
    );
    println!(
        "node1 caught up {:?} after the partition healed",
        healed.elapsed()
    );
}

#[test]
fn underlay_mtu_change_reaches_the_device_and_subnet_env() {
    require_root();
    let lab = TestLab::up("f-mtu", Backend::Vxlan, &[]);
    lab.ok("node1", &["ip", "link", "set", "eth0", "mtu", "1400"]);
    let env = lab.lab().node("node1").unwrap().dir.join("subnet.env");
    wait_until(
        Duration::from_secs(15),
        "the new MTU to reach flannel.1 and subnet.env",
        || {
            lab.ok("node1", &["ip", "link", "show", "flannel.1"])
                .contains("mtu 1350")
                && std::fs::read_to_string(&env)
                    .unwrap()
                    .contains("FLANNEL_MTU=1350")
        },
    );
}

/// WireGuard peers removed or altered by hand (`wg set`) are put back
/// within a resync, and traffic flows again.
#[test]
fn tampered_wireguard_peers_are_restored_within_a_resync() {
    require_root();
    let lab = TestLab::up("f-wgtamper", Backend::Wireguard, &[]);
    let wg = |node: &str, args: &[&str]| {
        let mut argv = vec!["wg"];
        argv.extend_from_slice(args);
        common::lab_exec_ok(&lab, node, &argv)
    };
    let key2 = wg("node2", &["show", "flannel-wg", "public-key"]);
    let key3 = wg("node3", &["show", "flannel-wg", "public-key"]);
    let (key2, key3) = (key2.trim(), key3.trim());
    let subnet3 = lab.subnet("node3");
    wg("node1", &["set", "flannel-wg", "peer", key2, "remove"]);
    wg(
        "node1",
        &[
            "set",
            "flannel-wg",
            "peer",
            key3,
            "allowed-ips",
            "10.99.0.0/24",
        ],
    );
    let dump = wg("node1", &["show", "flannel-wg", "dump"]);
    assert!(!dump.contains(key2), "the peer was not removed:\n{dump}");
    let start = Instant::now();
    wait_until(
        Duration::from_secs(15),
        "node1's WireGuard peers to be restored",
        || {
            let dump = wg("node1", &["show", "flannel-wg", "dump"]);
            dump.contains(key2)
                && dump.lines().any(|l| {
                    l.starts_with(key3) && l.contains(&subnet3) && !l.contains("10.99.0.0")
                })
        },
    );
    println!("WireGuard peers repaired in {:?}", start.elapsed());
    // `wg set` through the UAPI socket recreated node1's peers (gotatun's
    // UAPI does; the kernel's does not), so node1 lost its sessions while
    // node2 and node3 still hold theirs: traffic resumes after the next
    // handshake, which the test waits for rather than assumes.
    let repaired = Instant::now();
    wait_until(Duration::from_secs(30), "traffic to flow again", || {
        lab.lab().check().is_ok_and(|r| r.ok)
    });
    println!("traffic flowing {:?} after the repair", repaired.elapsed());
    lab.assert_matrix();
}
