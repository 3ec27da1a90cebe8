#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Timings of the batch methods at cluster scale (10 000 peers). Ignored by
//! default; run with
//! `cargo test --release -p weft-dataplane --test netlink_bench -- --ignored --nocapture`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use common::netns::in_vxlan_node;
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

        let t = Instant::now();
        let r = nl.replace_routes(&routes).await;
        let routes_ms = ms(t);
        assert!(r.iter().all(Result::is_ok));
        println!("replace_routes x{PEERS}: {routes_ms:.1} ms");

        let t = Instant::now();
        let r = nl.replace_routes(&routes).await;
        assert!(r.iter().all(Result::is_ok));
        println!(
            "replace_routes x{PEERS} again (all present): {:.1} ms",
            ms(t)
        );

        let t = Instant::now();
        let listed = nl.routes(Family::V4).await?;
        println!("routes() listing {} routes: {:.1} ms", listed.len(), ms(t));

        let t = Instant::now();
        let a = nl.replace_neighbours(vx, &neighs).await;
        let b = nl.replace_fdbs(vx, &fdbs).await;
        assert!(a.iter().chain(b.iter()).all(Result::is_ok));
        println!(
            "replace_neighbours + replace_fdbs x{PEERS}: {:.1} ms",
            ms(t)
        );

        let t = Instant::now();
        let d = nl.delete_routes(&routes).await;
        assert!(d.iter().all(Result::is_ok));
        println!("delete_routes x{PEERS}: {:.1} ms", ms(t));

        // Whole peers, as the vxlan backend programs them: neighbour, FDB,
        // route (routes were deleted above; neighbours and FDB replaced).
        let t = Instant::now();
        let a = nl.replace_neighbours(vx, &neighs).await;
        let b = nl.replace_fdbs(vx, &fdbs).await;
        let c = nl.replace_routes(&routes).await;
        assert!(a.iter().chain(b.iter()).chain(c.iter()).all(Result::is_ok));
        println!(
            "full vxlan programming of {PEERS} peers (3 x {PEERS} requests): {:.1} ms",
            ms(t)
        );

        // The kernel's O(N²) for routes differing only in their gateway (see
        // RouteSpec::metric): spread metrics avoid it.
        let d = nl.delete_routes(&routes).await;
        assert!(d.iter().all(Result::is_ok));
        let spread: Vec<RouteSpec> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| r.clone().metric(i as u32))
            .collect();
        let t = Instant::now();
        let r = nl.replace_routes(&spread).await;
        assert!(r.iter().all(Result::is_ok));
        println!(
            "replace_routes x{PEERS} with distinct metrics: {:.1} ms",
            ms(t)
        );
        let d = nl.delete_routes(&spread).await;
        assert!(d.iter().all(Result::is_ok));

        // One request at a time, for comparison with the batch above.
        let t = Instant::now();
        for route in &spread {
            nl.replace_route(route).await?;
        }
        println!(
            "replace_route one by one x{PEERS} with distinct metrics: {:.1} ms",
            ms(t)
        );
        Ok(())
    });
}
