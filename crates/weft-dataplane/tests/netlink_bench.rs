#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Timings of the batch methods at cluster scale (10 000 peers). Ignored by
//! default; run with
//! `cargo test --release -p weft-dataplane --test netlink_bench -- --ignored --nocapture`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use common::netns::{assert_batch_ok, in_vxlan_node};
use ipnet::IpNet;
use weft_core::mac::Mac;
use weft_dataplane::netlink::{Family, RouteSpec};

const PEERS: u32 = 10_000;

struct Peer {
    subnet: IpNet,
    gateway: IpAddr,
    mac: Mac,
    vtep: IpAddr,
}

fn peers() -> Vec<Peer> {
    (0..PEERS)
        .map(|i| {
            let net = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i << 8));
            let vtep = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i + 1);
            let b = i.to_be_bytes();
            Peer {
                subnet: IpNet::new(IpAddr::V4(net), 24).unwrap(),
                gateway: IpAddr::V4(net),
                mac: Mac([0x0e, 0x2a, b[0], b[1], b[2], b[3]]),
                vtep: IpAddr::V4(vtep),
            }
        })
        .collect()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Awaits `work`, printing how long it took as `WHAT: N ms`.
async fn timed<T>(what: &str, work: impl Future<Output = T>) -> T {
    let t = Instant::now();
    let out = work.await;
    println!("{what}: {:.1} ms", ms(t));
    out
}

#[test]
#[ignore = "timing run; see the module doc"]
fn ten_thousand_peers() {
    in_vxlan_node(|nl, _, vx| async move {
        let peers = peers();
        let routes: Vec<RouteSpec> = peers
            .iter()
            .map(|p| RouteSpec::unicast(p.subnet).via(p.gateway).dev(vx).onlink())
            .collect();
        let neighs: Vec<(IpAddr, Mac)> = peers.iter().map(|p| (p.gateway, p.mac)).collect();
        let fdbs: Vec<(Mac, IpAddr)> = peers.iter().map(|p| (p.mac, p.vtep)).collect();

        let what = format!("replace_routes x{PEERS}");
        assert_batch_ok(&timed(&what, nl.replace_routes(&routes)).await);
        let what = format!("replace_routes x{PEERS} again (all present)");
        assert_batch_ok(&timed(&what, nl.replace_routes(&routes)).await);

        let t = Instant::now();
        let listed = nl.routes(Family::V4).await?;
        println!("routes() listing {} routes: {:.1} ms", listed.len(), ms(t));

        let what = format!("replace_neighbours + replace_fdbs x{PEERS}");
        let (a, b) = timed(&what, async {
            let a = nl.replace_neighbours(vx, &neighs).await;
            (a, nl.replace_fdbs(vx, &fdbs).await)
        })
        .await;
        assert_batch_ok(&a);
        assert_batch_ok(&b);

        let what = format!("delete_routes x{PEERS}");
        assert_batch_ok(&timed(&what, nl.delete_routes(&routes)).await);

        // Whole peers, as the vxlan backend programs them: neighbour, FDB,
        // route (routes were deleted above; neighbours and FDB replaced).
        let what = format!("full vxlan programming of {PEERS} peers (3 x {PEERS} requests)");
        let (a, b, c) = timed(&what, async {
            let a = nl.replace_neighbours(vx, &neighs).await;
            let b = nl.replace_fdbs(vx, &fdbs).await;
            (a, b, nl.replace_routes(&routes).await)
        })
        .await;
        for batch in [a, b, c] {
            assert_batch_ok(&batch);
        }

        // The kernel's O(N²) for routes differing only in their gateway (see
        // RouteSpec::metric): spread metrics avoid it.
        assert_batch_ok(&nl.delete_routes(&routes).await);
        let spread: Vec<RouteSpec> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| r.clone().metric(i as u32))
            .collect();
        let what = format!("replace_routes x{PEERS} with distinct metrics");
        assert_batch_ok(&timed(&what, nl.replace_routes(&spread)).await);
        assert_batch_ok(&nl.delete_routes(&spread).await);

        // One request at a time, for comparison with the batch above.
        let what = format!("replace_route one by one x{PEERS} with distinct metrics");
        timed(&what, async {
            for route in &spread {
                nl.replace_route(route).await?;
            }
            anyhow::Ok(())
        })
        .await?;
        Ok(())
    });
}
