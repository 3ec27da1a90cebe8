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
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use weft_dataplane::netlink::{Family, NeighState, Netlink};

use super::probe::http_get;

/// weft's route protocol (`proto 87`).
const WEFT_PROTO: u8 = 87;
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

enum Cmd {
    /// Wait for `/readyz`, then the route to `last`, then `n` of each entry.
    Cold {
        t0: Instant,
        readyz: SocketAddr,
        last: (IpAddr, IpAddr),
        n: usize,
        reply: mpsc::Sender<Result<ColdStart>>,
    },
    /// Wait until a lookup of `probe` goes via `gateway`.
    Route {
        probe: IpAddr,
        gateway: IpAddr,
        reply: mpsc::Sender<Result<Instant>>,
    },
    Counts(mpsc::Sender<Result<Counts>>),
    DeleteVxlan(mpsc::Sender<Result<()>>),
}

/// A thread inside one node's namespace, answering [`Cmd`]s.
pub struct Watcher {
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

const LIMIT: Duration = Duration::from_secs(120);

impl Watcher {
    pub fn open(netns: &str) -> Result<Watcher> {
        let file = std::fs::File::open(weft_lab::netns_path(netns))
            .with_context(|| format!("cannot open network namespace {netns}"))?;
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let thread = std::thread::spawn(move || {
            let setup = (|| -> Result<(tokio::runtime::Runtime, Netlink)> {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let nl = rt.block_on(async { Netlink::connect() })?;
                Ok((rt, nl))
            })();
            let (rt, nl) = match setup {
                Ok(ok) => {
                    let _ = ready_tx.send(Ok(()));
                    ok
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while let Ok(cmd) = rx.recv() {
                match cmd {
                    Cmd::Cold {
                        t0,
                        readyz,
                        last,
                        n,
                        reply,
                    } => {
                        let _ = reply.send(rt.block_on(cold(&nl, t0, readyz, last, n)));
                    }
                    Cmd::Route {
                        probe,
                        gateway,
                        reply,
                    } => {
                        let _ = reply.send(rt.block_on(route_appears(&nl, probe, gateway)));
                    }
                    Cmd::Counts(reply) => {
                        let _ = reply.send(rt.block_on(counts(&nl)));
                    }
                    Cmd::DeleteVxlan(reply) => {
                        let _ = reply.send(rt.block_on(delete_vxlan(&nl)));
                    }
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the watcher thread ended"))??;
        Ok(Watcher {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(|| anyhow!("the watcher is closed"))?
            .send(cmd)
            .map_err(|_| anyhow!("the watcher thread ended"))
    }

    /// Starts watching a cold start; the answer comes on the receiver.
    pub fn cold_start(
        &self,
        t0: Instant,
        readyz: SocketAddr,
        last: (IpAddr, IpAddr),
        n: usize,
    ) -> Result<mpsc::Receiver<Result<ColdStart>>> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Cold {
            t0,
            readyz,
            last,
            n,
            reply,
        })?;
        Ok(rx)
    }

    /// Starts waiting for a route; the moment it appeared comes on the
    /// receiver.
    pub fn route(&self, probe: IpAddr, gateway: IpAddr) -> Result<mpsc::Receiver<Result<Instant>>> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Route {
            probe,
            gateway,
            reply,
        })?;
        Ok(rx)
    }

    pub fn counts(&self) -> Result<Counts> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Counts(reply))?;
        rx.recv().map_err(|_| anyhow!("the watcher thread ended"))?
    }

    /// Deletes `flannel.1` and with it every route, neighbour and FDB
    /// entry on it: the node is as fresh as after a reboot.
    pub fn delete_vxlan(&self) -> Result<()> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::DeleteVxlan(reply))?;
        rx.recv().map_err(|_| anyhow!("the watcher thread ended"))?
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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

async fn counts(nl: &Netlink) -> Result<Counts> {
    let routes = nl
        .routes(Family::V4)
        .await?
        .iter()
        .filter(|r| r.protocol == WEFT_PROTO && r.gateway.is_some())
        .count();
    let Some(dev) = nl.link_by_name(VXLAN_DEV).await? else {
        return Ok(Counts {
            routes,
            ..Counts::default()
        });
    };
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
