//! The kernel alone: how long installing K vxlan peers takes with nothing
//! but netlink batches (the floor for weftd's cold start), and how the
//! route's shape changes it.
//!
//! Why the shape matters: IPv4 routes share `fib_info` objects, found
//! through a hash of (protocol, scope, prefsrc, metric, device) — the
//! gateway is not hashed (net/ipv4/fib_semantics.c, `fib_info_hashfn`).
//! flannel's routes (`<subnet> via <peer VTEP> dev flannel.1 onlink`)
//! differ only in the gateway, so all of them land in one bucket and each
//! insert walks every earlier one (`fib_find_info` → `nh_comp`): O(N²).
//! Each option below changes one thing and is timed in a fresh namespace
//! (per-netns fib_info hash since 6.15), so the options do not disturb
//! each other. iproute2 (`ip -batch`) stands in where weft's netlink
//! layer has no message type (nexthop objects): it is a fixture here.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use weft_bench::results::{Growth, Routes, Shape, ShapeTime};
use weft_bench::stats::{Summary, finite, ms};
use weft_core::mac::Mac;
use weft_dataplane::netlink::{Netlink, RouteSpec, VxlanLinkSpec};
use weft_dataplane::netns::{Netns, with_runtime};

use super::Ctx;
use super::leases::Peer;

/// An underlay `eth0` and an up `flannel.1` on it, as on a lab node.
async fn vxlan_node(nl: &Netlink) -> Result<u32> {
    nl.create_veth("eth0", "eth0p").await?;
    let eth0 = nl.link_by_name("eth0").await?.context("eth0 missing")?;
    let peer = nl.link_by_name("eth0p").await?.context("eth0p missing")?;
    nl.add_address(eth0.index, "192.0.2.1/24".parse()?).await?;
    nl.set_link_up(peer.index).await?;
    nl.set_link_up(eth0.index).await?;
    let vx = nl
        .create_vxlan(&VxlanLinkSpec {
            name: "flannel.1".into(),
            vni: 1,
            port: 8472,
            local: "192.0.2.1".parse()?,
            underlay_index: Some(eth0.index),
            learning: false,
            gbp: false,
            mtu: 1450,
            mac: Some("0e:2a:ff:ff:ff:ff".parse()?),
        })
        .await?;
    nl.set_link_up(vx).await?;
    Ok(vx)
}

fn flannel_routes(peers: &[Peer], vx: u32) -> Vec<RouteSpec> {
    peers
        .iter()
        .map(|p| {
            RouteSpec::unicast(p.net())
                .via(p.gateway())
                .dev(vx)
                .onlink()
        })
        .collect()
}

fn all_ok(results: Vec<Result<(), weft_dataplane::netlink::NetlinkError>>) -> Result<()> {
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The floor for a cold start: `k` vxlan peers (neighbour, FDB entry,
/// route, in weftd's order and shape) programmed with weft's netlink
/// batches into a fresh namespace.
pub fn raw_install(k: u32) -> Result<Duration> {
    with_fresh_netlink(move |nl| async move {
        let vx = vxlan_node(&nl).await?;
        let peers: Vec<Peer> = (0..k).map(Peer::new).collect();
        let neighs: Vec<(IpAddr, Mac)> = peers.iter().map(|p| (p.gateway(), p.mac)).collect();
        let fdbs: Vec<(Mac, IpAddr)> = peers
            .iter()
            .map(|p| (p.mac, IpAddr::V4(p.public)))
            .collect();
        let routes = flannel_routes(&peers, vx);
        let t = Instant::now();
        all_ok(nl.replace_neighbours(vx, &neighs).await)?;
        all_ok(nl.replace_fdbs(vx, &fdbs).await)?;
        all_ok(nl.replace_routes(&routes).await)?;
        Ok(t.elapsed())
    })
}

/// Whether this kernel can create an ipip device (the ipip backend).
pub fn ipip_supported() -> std::result::Result<(), String> {
    with_fresh_netlink(|nl| async move {
        nl.create_ipip("probe.ipip", Ipv4Addr::new(192, 0, 2, 1), 1480)
            .await?;
        Ok(())
    })
    .map_err(|e| format!("{e:#}"))
}

/// Time of one shape at `n` routes, in a fresh namespace.
fn time_shape(shape: Shape, n: u32) -> Result<Duration> {
    with_fresh_netlink(move |nl| async move {
        let vx = vxlan_node(&nl).await?;
        let peers: Vec<Peer> = (0..n).map(Peer::new).collect();
        let mut routes = flannel_routes(&peers, vx);
        let nl2 = nl.clone();
        let batch = |r: Vec<RouteSpec>| async move {
            let t = Instant::now();
            all_ok(nl2.replace_routes(&r).await)?;
            Ok::<_, anyhow::Error>(t.elapsed())
        };
        match shape {
            Shape::Flannel => batch(routes).await,
            Shape::Reversed => {
                routes.reverse();
                batch(routes).await
            }
            Shape::MetricPerRoute => {
                batch(
                    routes
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| r.metric(i as u32))
                        .collect(),
                )
                .await
            }
            Shape::Metric64 => {
                batch(
                    routes
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| r.metric(i as u32 % 64))
                        .collect(),
                )
                .await
            }
            Shape::OneByOne => {
                let t = Instant::now();
                for r in &routes {
                    nl.replace_route(r).await?;
                }
                Ok(t.elapsed())
            }
            Shape::Delete => {
                all_ok(nl.replace_routes(&routes).await)?;
                let t = Instant::now();
                all_ok(nl.delete_routes(&routes).await)?;
                Ok(t.elapsed())
            }
            Shape::Ipv6 => {
                let v6: Vec<RouteSpec> = (0..n)
                    .map(|i| {
                        let net = Ipv6Addr::new(0xfd00, 1, (i >> 16) as u16, i as u16, 0, 0, 0, 0);
                        let dst = IpNet::new(IpAddr::V6(net), 64).unwrap_or_default();
                        RouteSpec::unicast(dst)
                            .via(IpAddr::V6(net))
                            .dev(vx)
                            .onlink()
                    })
                    .collect();
                batch(v6).await
            }
            Shape::IpBatch => {
                let lines: String = peers
                    .iter()
                    .map(|p| {
                        format!(
                            "route replace {} via {} dev flannel.1 onlink proto 87\n",
                            p.subnet,
                            p.gateway()
                        )
                    })
                    .collect();
                ip_batch(&lines)
            }
            Shape::Nexthops => {
                let mut lines = String::new();
                for (i, p) in peers.iter().enumerate() {
                    lines.push_str(&format!(
                        "nexthop add id {} via {} dev flannel.1 onlink proto 87\n",
                        i + 1,
                        p.gateway()
                    ));
                }
                for (i, p) in peers.iter().enumerate() {
                    lines.push_str(&format!(
                        "route replace {} nhid {} proto 87\n",
                        p.subnet,
                        i + 1
                    ));
                }
                ip_batch(&lines)
            }
        }
    })
}

/// Feeds `lines` to `ip -batch -` in the current thread's namespace.
fn ip_batch(lines: &str) -> Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ip (iproute2)")?;
    child
        .stdin
        .take()
        .context("no stdin for ip")?
        .write_all(lines.as_bytes())?;
    let out = child.wait_with_output()?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "ip -batch failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or_default()
        );
    }
    Ok(took)
}

/// The route-installation part: every shape at 10 000 routes, and the
/// flannel shape at growing N to show the quadratic growth.
pub fn run(ctx: &Ctx) -> Result<Routes> {
    let n = 10_000;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); Shape::ALL.len()];
    let sizes = [1_000u32, 2_500, 5_000, 10_000];
    let mut growth: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for run in 0..ctx.runs {
        ctx.say(format!(
            "routes: run {}/{}: {} shapes of {n} routes",
            run + 1,
            ctx.runs,
            Shape::ALL.len()
        ));
        for (i, shape) in Shape::ALL.iter().enumerate() {
            times[i].push(ms(time_shape(*shape, n).with_context(|| shape.describe())?));
        }
        for (i, size) in sizes.iter().enumerate() {
            growth[i].push(ms(time_shape(Shape::Flannel, *size)?));
        }
    }
    let flannel = Summary::of(&times[0]).map(|s| s.median);
    let shapes = Shape::ALL
        .iter()
        .zip(&times)
        .map(|(shape, t)| {
            let s = Summary::of(t);
            ShapeTime {
                shape: *shape,
                ms: s,
                vs_flannel: s.zip(flannel).and_then(|(s, f)| finite(s.median / f)),
            }
        })
        .collect();
    let growth = sizes
        .iter()
        .zip(&growth)
        .map(|(size, t)| {
            let s = Summary::of(t);
            Growth {
                routes: *size,
                ms: s,
                us_per_route: s.and_then(|s| finite(s.median * 1e3 / f64::from(*size))),
            }
        })
        .collect();
    Ok(Routes {
        runs: ctx.runs,
        routes: n,
        shapes,
        growth,
    })
}

/// Runs the async `f` with a netlink connection in a new, empty network
/// namespace, gone when `f` ends: the kernel timed alone, nothing else in
/// the way, and the root namespace untouched.
fn with_fresh_netlink<T, F, Fut>(f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Netlink) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    with_runtime(&Netns::Fresh, || async { f(Netlink::connect()?).await })?
}
