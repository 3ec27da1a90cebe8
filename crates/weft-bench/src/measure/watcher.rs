//! Watching a node's kernel from inside its namespace while the agent
//! works: when a peer's route appears, how many entries weft holds, when
//! `/readyz` turns 200.
//!
//! Why lookups and not dumps while waiting: a dump of 10 000 routes costs
//! the kernel milliseconds of CPU that the agent, on the same two cores,
//! would lose; one route lookup (`ip route get`) costs microseconds. A
//! full dump is taken only to confirm the end.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::runtime::Runtime;
use weft_dataplane::netlink::{Family, NeighState, Netlink};
use weft_dataplane::netns::{Resident, named};

use super::probe::http_get;

const VXLAN_DEV: &str = "flannel.1";

/// What a node holds for its peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub routes: usize,
    pub neighbours: usize,
    pub fdb: usize,
}

impl Counts {
    pub fn all(&self, n: usize) -> bool {
        self.routes >= n && self.neighbours >= n && self.fdb >= n
    }
}

/// Moments of a cold start, all measured from the same `t0`.
#[derive(Debug, Clone, Copy)]
pub struct ColdStart {
    pub ready: Duration,
    pub last_route: Duration,
    pub complete: Duration,
    pub counts: Counts,
}

/// A resident thread inside one node's namespace, with a netlink
/// connection there.
pub struct Watcher {
    resident: Resident<(Runtime, Netlink)>,
}

const LIMIT: Duration = Duration::from_secs(120);

impl Watcher {
    pub fn open(netns: &str) -> Result<Watcher> {
        let resident = Resident::start(named(netns), || -> Result<(Runtime, Netlink)> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let nl = rt.block_on(async { Netlink::connect() })?;
            Ok((rt, nl))
        })
        .with_context(|| format!("cannot enter network namespace {netns}"))??;
        Ok(Watcher { resident })
    }

    /// Starts `op` on the watcher's thread; its answer comes on the
    /// receiver.
    fn submit<T, Fut>(
        &self,
        op: impl FnOnce(Netlink) -> Fut + Send + 'static,
    ) -> Result<mpsc::Receiver<Result<T>>>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        Ok(self
            .resident
            .submit(move |(rt, nl)| rt.block_on(op(nl.clone())))?)
    }

    fn call<T, Fut>(&self, op: impl FnOnce(Netlink) -> Fut + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        self.submit(op)?
            .recv()
            .map_err(|_| anyhow!("the watcher thread ended"))?
    }

    /// Starts watching a cold start: `/readyz`, then the route to `last`,
    /// then `n` of each entry. The answer comes on the receiver.
    pub fn cold_start(
        &self,
        t0: Instant,
        readyz: SocketAddr,
        last: (IpAddr, IpAddr),
        n: usize,
    ) -> Result<mpsc::Receiver<Result<ColdStart>>> {
        self.submit(move |nl| async move { cold(&nl, t0, readyz, last, n).await })
    }

    /// Starts waiting until a lookup of `probe` goes via `gateway`; the
    /// moment it did comes on the receiver.
    pub fn route(&self, probe: IpAddr, gateway: IpAddr) -> Result<mpsc::Receiver<Result<Instant>>> {
        self.submit(move |nl| async move { route_appears(&nl, probe, gateway).await })
    }

    pub fn counts(&self) -> Result<Counts> {
        self.call(|nl| async move { counts(&nl).await })
    }

    /// Deletes `flannel.1` and with it every route, neighbour and FDB
    /// entry on it: the node is as fresh as after a reboot.
    pub fn delete_vxlan(&self) -> Result<()> {
        self.call(|nl| async move { delete_vxlan(&nl).await })
    }
}

async fn has_route(nl: &Netlink, probe: IpAddr, gateway: IpAddr) -> bool {
    matches!(nl.route_get(probe).await, Ok(Some(r)) if r.gateway == Some(gateway))
}

async fn route_appears(nl: &Netlink, probe: IpAddr, gateway: IpAddr) -> Result<Instant> {
    let start = Instant::now();
    loop {
        if has_route(nl, probe, gateway).await {
            return Ok(Instant::now());
        }
        if start.elapsed() > LIMIT {
            bail!("the route to {probe} did not appear within {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_micros(250)).await;
    }
}

async fn cold(
    nl: &Netlink,
    t0: Instant,
    readyz: SocketAddr,
    (probe, gateway): (IpAddr, IpAddr),
    n: usize,
) -> Result<ColdStart> {
    let ready = loop {
        // Blocking is fine: this runtime runs nothing else meanwhile.
        let ok = http_get(readyz, "/readyz", Duration::from_millis(200))
            .is_ok_and(|(code, _)| code == 200);
        if ok {
            break t0.elapsed();
        }
        if t0.elapsed() > LIMIT {
            bail!("/readyz did not answer 200 within {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let last_route = if n == 0 {
        ready
    } else {
        loop {
            if has_route(nl, probe, gateway).await {
                break t0.elapsed();
            }
            if t0.elapsed() > LIMIT {
                bail!("the last peer's route did not appear within {LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    loop {
        let c = counts(nl).await?;
        if c.all(n) {
            return Ok(ColdStart {
                ready,
                last_route,
                complete: t0.elapsed(),
                counts: c,
            });
        }
        if t0.elapsed() > LIMIT {
            bail!("after {LIMIT:?} the node holds {c:?}, not {n} of each");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The peers' entries on `flannel.1`: routes via a gateway on it (any
/// route protocol: weftd marks its routes `proto 87`, flanneld leaves the
/// kernel's default), permanent neighbours, FDB entries with a remote.
async fn counts(nl: &Netlink) -> Result<Counts> {
    let Some(dev) = nl.link_by_name(VXLAN_DEV).await? else {
        return Ok(Counts::default());
    };
    let routes = nl
        .routes(Family::V4)
        .await?
        .iter()
        .filter(|r| r.oif == Some(dev.index) && r.gateway.is_some())
        .count();
    let neighbours = nl
        .neighbours(dev.index)
        .await?
        .iter()
        .filter(|n| n.state == NeighState::Permanent)
        .count();
    let fdb = nl
        .fdb(dev.index)
        .await?
        .iter()
        .filter(|f| f.dst.is_some())
        .count();
    Ok(Counts {
        routes,
        neighbours,
        fdb,
    })
}

async fn delete_vxlan(nl: &Netlink) -> Result<()> {
    if let Some(dev) = nl.link_by_name(VXLAN_DEV).await? {
        nl.delete_link(dev.index).await?;
    }
    Ok(())
}
