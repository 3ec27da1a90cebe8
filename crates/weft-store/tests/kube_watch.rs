//! Peers through the node watch, against the in-repo API server: added and
//! removed, malformed ones skipped, 410 and outages survived without ever
//! losing a peer from the snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_kube;

use std::sync::Arc;
use std::time::Duration;

use common_kube::{
    Cluster, SnapshotRx, count_requests, fast_options, node1, peer_names, vxlan, wait_for,
};
use weft_kube_testserver::{NodeSpec, ServerOptions};
use weft_store::{LeaseStore, PeerSnapshot};

/// node2 as flanneld registers it (vxlan, its VTEP MAC annotated).
fn add_node2(c: &Cluster) {
    c.add_flannel_node("node2", "192.0.2.2", "ee:a4:86:c3:7f:02");
}

/// The first snapshot whose only peer is node2.
async fn node2_alone(rx: &mut SnapshotRx) -> Arc<PeerSnapshot> {
    wait_for(rx, "node2", |s| peer_names(s) == ["node2"]).await
}

fn watch_requests(c: &Cluster) -> usize {
    c.server
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.uri.contains("watch=true"))
        .count()
}

/// Waits (up to 20 s) until `cond` holds, for conditions on the server's
/// request log, which has no change notification.
async fn poll_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        // Poll interval: nothing to wait on but the log itself.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lists(c: &Cluster) -> usize {
    c.server
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.uri.starts_with("/api/v1/nodes")
                && !r.uri.contains("watch=true")
                && !r.uri.starts_with("/api/v1/nodes/")
        })
        .count()
}

#[tokio::test]
async fn peers_are_added_and_removed_through_the_watch() {
    let c = Cluster::start().await;
    add_node2(&c);
    let (_store, _lease, mut rx) = node1(&c).await;
    let s = node2_alone(&mut rx).await;
    assert!(s.own_present);
    let (_, lease) = &s.peers.accepted[0];
    assert_eq!(lease.attrs, vxlan("192.0.2.2", "ee:a4:86:c3:7f:02"));
    assert_eq!(lease.subnets.v4.unwrap().to_string(), c.pod_cidr("node2"));

    // A node without flannel's annotations is no peer, and no warning.
    c.add_node("plain", "192.0.2.9");
    c.add_flannel_node("node3", "192.0.2.3", "ee:a4:86:c3:7f:03");
    let s = wait_for(&mut rx, "node3", |s| peer_names(s) == ["node2", "node3"]).await;
    assert!(s.peers.rejected.is_empty());

    // A new VtepMAC reaches the snapshot.
    c.server
        .annotate(
            "node3",
            &[(
                "flannel.alpha.coreos.com/backend-data",
                Some(r#"{"VNI":1,"VtepMAC":"ee:a4:86:c3:7f:33"}"#),
            )],
        )
        .unwrap();
    wait_for(&mut rx, "node3's new MAC", |s| {
        s.peers
            .accepted
            .iter()
            .any(|(n, l)| n == "node3" && l.attrs == vxlan("192.0.2.3", "ee:a4:86:c3:7f:33"))
    })
    .await;

    c.server.delete_node("node2").unwrap();
    wait_for(&mut rx, "node2 gone", |s| peer_names(s) == ["node3"]).await;
}

#[tokio::test]
async fn a_malformed_node_is_skipped_counted_and_warned_once_per_change() {
    let c = Cluster::start().await;
    c.add_flannel_node("good", "192.0.2.2", "ee:a4:86:c3:7f:02");
    c.add_flannel_node("bad", "192.0.2.3", "ee:a4:86:c3:7f:03");
    c.server
        .annotate(
            "bad",
            &[("flannel.alpha.coreos.com/backend-data", Some("{not json"))],
        )
        .unwrap();
    let (_store, _lease, mut rx) = node1(&c).await;
    let s = wait_for(&mut rx, "bad skipped", |s| s.peers.rejected.len() == 1).await;
    assert_eq!(peer_names(&s), ["good"]);
    assert_eq!(s.peers.rejected[0].id, "bad");
    assert_eq!(s.skipped_total.get("bad_value"), Some(&1));

    // The kubelet touching the node changes nothing relevant: no new count.
    for _ in 0..3 {
        c.server
            .modify_node("bad", |n| {
                n["status"]["conditions"][0]["lastHeartbeatTime"] = "2030-01-01T00:00:00Z".into()
            })
            .unwrap();
    }
    // A relevant change is warned about and counted again.
    c.server
        .annotate(
            "bad",
            &[("flannel.alpha.coreos.com/public-ip", Some("300.0.0.1"))],
        )
        .unwrap();
    let s = wait_for(&mut rx, "second count", |s| {
        s.skipped_total.get("bad_value") == Some(&2)
    })
    .await;
    assert_eq!(peer_names(&s), ["good"]);

    // Valid JSON, wrong content: the backend data check catches it.
    c.add_flannel_node("nomac", "192.0.2.4", "ee:a4:86:c3:7f:04");
    c.server
        .annotate(
            "nomac",
            &[(
                "flannel.alpha.coreos.com/backend-data",
                Some(r#"{"VNI":1}"#),
            )],
        )
        .unwrap();
    wait_for(&mut rx, "nomac skipped", |s| {
        s.skipped_total.get("bad_backend_data") == Some(&1)
    })
    .await;

    // A podCIDR outside the cluster network.
    c.server
        .add_node(NodeSpec::new("outside").pod_cidrs(&["10.99.0.0/24"]))
        .unwrap();
    c.server
        .annotate(
            "outside",
            &[
                (
                    "flannel.alpha.coreos.com/backend-data",
                    Some(r#"{"VNI":1,"VtepMAC":"ee:a4:86:c3:7f:05"}"#),
                ),
                ("flannel.alpha.coreos.com/backend-type", Some("vxlan")),
                ("flannel.alpha.coreos.com/kube-subnet-manager", Some("true")),
                ("flannel.alpha.coreos.com/public-ip", Some("192.0.2.5")),
            ],
        )
        .unwrap();
    let s = wait_for(&mut rx, "outside skipped", |s| {
        s.skipped_total.get("outside_network") == Some(&1)
    })
    .await;
    assert_eq!(peer_names(&s), ["good"]);
    assert_eq!(
        s.skipped_total.get("bad_value"),
        Some(&2),
        "no repeat warning for unchanged nodes"
    );
}

/// Records the fewest peers seen in any snapshot after the first full one.
fn record_minimum(mut rx: common_kube::SnapshotRx) -> Arc<std::sync::Mutex<usize>> {
    let min = Arc::new(std::sync::Mutex::new(usize::MAX));
    let m = Arc::clone(&min);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            if let Some(s) = rx.borrow_and_update().clone() {
                let mut m = m.lock().unwrap();
                *m = (*m).min(s.peers.accepted.len());
            }
        }
    });
    min
}

async fn relist_keeps_peers(opts: ServerOptions) {
    let c = Cluster::with(opts).await;
    add_node2(&c);
    c.add_flannel_node("node3", "192.0.2.3", "ee:a4:86:c3:7f:03");
    let (_store, _lease, mut rx) = node1(&c).await;
    wait_for(&mut rx, "both peers", |s| s.peers.accepted.len() == 2).await;
    let min = record_minimum(rx.clone());
    assert_eq!(lists(&c), 1);

    // History compacted: the resumed watch gets 410 and the store lists again.
    c.server.compact();
    c.add_flannel_node("node4", "192.0.2.4", "ee:a4:86:c3:7f:04");
    wait_for(&mut rx, "node4 after the relist", |s| {
        s.peers.accepted.len() == 3
    })
    .await;
    assert!(lists(&c) >= 2, "a 410 must lead to a new list");
    c.server.compact();
    c.server.delete_node("node4").unwrap();
    wait_for(&mut rx, "node4 gone after another relist", |s| {
        s.peers.accepted.len() == 2
    })
    .await;
    assert_eq!(
        *min.lock().unwrap(),
        2,
        "the snapshot never lost a peer on the way"
    );
    // Both relists are counted for /metrics.
    let restarts = rx.borrow().clone().unwrap().watch_restarts.clone();
    assert_eq!(restarts.get("relist"), Some(&2), "{restarts:?}");
}

#[tokio::test]
async fn a_410_error_event_leads_to_a_relist_without_losing_peers() {
    relist_keeps_peers(fast_options()).await;
}

#[tokio::test]
async fn an_http_410_leads_to_a_relist_without_losing_peers() {
    relist_keeps_peers(ServerOptions {
        gone_as_http_status: true,
        ..fast_options()
    })
    .await;
}

#[tokio::test]
async fn an_outage_keeps_the_last_snapshot_and_updates_resume() {
    let c = Cluster::start().await;
    add_node2(&c);
    let (_store, _lease, mut rx) = node1(&c).await;
    let before = node2_alone(&mut rx).await;
    let min = record_minimum(rx.clone());

    c.server.stop_serving().await;
    // Changes while the API is away are seen once it is back.
    c.add_flannel_node("node3", "192.0.2.3", "ee:a4:86:c3:7f:03");
    // Negative window: for 2 s of outage (the store retrying meanwhile) the
    // snapshot must not change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rx.borrow().clone().unwrap();
    assert_eq!(
        during.peers, before.peers,
        "the last snapshot stays while the API is down"
    );

    c.server.start_serving().await.unwrap();
    wait_for(&mut rx, "node3 after the outage", |s| {
        peer_names(s) == ["node2", "node3"]
    })
    .await;
    assert!(*min.lock().unwrap() >= 1, "node2 never left the snapshot");
    // One outage, one restart, however many reconnects failed meanwhile.
    let restarts = rx.borrow().clone().unwrap().watch_restarts.clone();
    assert_eq!(restarts.get("error"), Some(&1), "{restarts:?}");
    assert_eq!(restarts.get("relist"), None, "{restarts:?}");
    // History was kept: the watch resumed without listing again.
    assert_eq!(
        lists(&c),
        1,
        "{:#?}",
        c.server
            .requests()
            .iter()
            .map(|r| &r.uri)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn watches_closed_by_the_server_are_resumed_from_the_last_version() {
    let c = Cluster::with(ServerOptions {
        max_watch_timeout: Duration::from_millis(1500),
        ..fast_options()
    })
    .await;
    let (_store, _lease, mut rx) = node1(&c).await;
    wait_for(&mut rx, "first snapshot", |s| s.peers.accepted.is_empty()).await;
    poll_until(
        "the server to close two watches and the store to resume each",
        || watch_requests(&c) >= 3,
    )
    .await;
    add_node2(&c);
    node2_alone(&mut rx).await;
    assert!(
        count_requests(&c.server, "GET", "/api/v1/nodes?") >= 3,
        "watched several times"
    );
    assert_eq!(
        lists(&c),
        1,
        "a closed watch resumes; it does not list again"
    );
    // A watch the server closes on its timeout is routine, not a restart.
    let restarts = rx.borrow().clone().unwrap().watch_restarts.clone();
    assert!(restarts.is_empty(), "{restarts:?}");
    let watches: Vec<_> = c
        .server
        .requests()
        .into_iter()
        .filter(|r| r.uri.contains("watch=true"))
        .collect();
    assert!(
        watches
            .iter()
            .all(|r| r.uri.contains("allowWatchBookmarks=true")),
        "{watches:?}"
    );
}

#[tokio::test]
async fn own_present_follows_our_annotations() {
    let c = Cluster::start().await;
    let (store, lease, mut rx) = node1(&c).await;
    wait_for(&mut rx, "own present", |s| s.own_present).await;
    c.server
        .annotate(
            "node1",
            &[("flannel.alpha.coreos.com/kube-subnet-manager", None)],
        )
        .unwrap();
    wait_for(&mut rx, "own missing", |s| !s.own_present).await;
    // The agent renews on that; the annotations come back.
    store.renew(&lease).await.unwrap();
    wait_for(&mut rx, "own present again", |s| s.own_present).await;
}

#[tokio::test]
async fn peers_follow_the_controller_managers_mask_not_subnet_len() {
    // --node-cidr-mask-size=25 while net-conf.json implies /24.
    let c = Cluster::with(ServerOptions {
        node_cidr_mask_v4: 25,
        ..fast_options()
    })
    .await;
    add_node2(&c);
    let (_store, lease, mut rx) = node1(&c).await;
    assert_eq!(lease.subnets.v4.unwrap().prefix_len(), 25);
    let s = wait_for(&mut rx, "node2", |s| {
        !s.peers.accepted.is_empty() || !s.peers.rejected.is_empty()
    })
    .await;
    assert_eq!(peer_names(&s), ["node2"], "{:?}", s.peers.rejected);
}
