//! Control plane at scale: one real weftd (vxlan, etcd store) on a lab
//! node, with K synthetic peers written straight into etcd.
//!
//! For each K: (a) cold starts — agent stopped and `flannel.1` deleted
//! (the kernel then holds nothing of weft's), agent started, time until
//! every route, neighbour and FDB entry is in; baseline: the same entries
//! through bare netlink batches in a fresh namespace; (b) one new lease →
//! its route, on the agent holding K peers; baseline: the store's own
//! delivery (an etcd watch in this process on the same key); (c) CPU per
//! reconcile pass with nothing to change, from the agent's thread run
//! times in `/proc` around bursts of triggers. Memory and `/readyz` time
//! are read on the way. The measurements are written over the [`Feed`]
//! seam, so that the Kubernetes part (`kube_scale.rs`) runs the same ones.
//!
//! With `--flanneld`, flanneld runs on the same node at K = 0 and each
//! K ≥ 5 000 (`vs_flannel.rs`): its cold starts alternate with weftd's
//! run by run (the order flipping each run, so drift weighs on both), then
//! each agent takes its new leases; CPU per pass is weftd's alone (it is
//! read from weftd's `/metrics`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use weft_bench::results::{self, FlannelScale, LeaseLatency, PassCpu, Scale};
use weft_bench::stats::{Summary, finite, ms, percentile, ratios};
use weft_core::etcd_key;
use weft_lab::{Backend, Lab, LabSpec, Signal, StoreKind};

use super::feed::Feed;
use super::leases::{self, NET_CONF, Peer, SAMPLE_BASE};
use super::probe::{self, PassCounters};
use super::routes::raw_install;
use super::store::Store;
use super::watcher::Watcher;
use super::{Ctx, footprint, vs_flannel};

/// The agent's health port inside its node (`/readyz`, `/metrics`).
const HEALTH_PORT: u16 = 9911;
/// The one lab node, whose agent is measured.
pub(super) const NODE: &str = "node1";

/// Everything measured at one K, sample by sample.
#[derive(Debug, Clone, Default)]
pub(super) struct AtK {
    pub k: u32,
    /// Cold start until every entry is in, ms, one per run.
    pub cold_ms: Vec<f64>,
    /// The same entries through bare netlink batches, ms, one per run.
    pub raw_ms: Vec<f64>,
    /// Start until `/readyz` answers 200, ms.
    pub ready_ms: Vec<f64>,
    /// weftd's resident and peak memory after each cold start, KiB.
    pub rss_kib: Vec<f64>,
    pub hwm_kib: Vec<f64>,
    pub anon_kib: Vec<f64>,
    /// New lease → route, ms, one per sample.
    pub lease_ms: Vec<f64>,
    /// New lease → the store confirmed it (etcd: the watch in this
    /// process heard of it), ms.
    pub watch_ms: Vec<f64>,
    pub cpu: Option<PassCpu>,
}

fn metrics(lab: &Lab) -> Result<PassCounters> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, HEALTH_PORT));
    let body = lab.in_netns(NODE, || {
        probe::http_get(addr, "/metrics", Duration::from_secs(5))
            .map_err(|e| weft_lab::LabError::Invalid(format!("/metrics: {e:#}")))
    })?;
    probe::pass_counters(&body.1)
}

fn agent_pid(lab: &Lab) -> Result<i32> {
    lab.node(NODE)?
        .pid
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| anyhow!("no agent pid recorded for {NODE}"))
}

/// Which agent a measurement runs on the lab node.
#[derive(Debug, Clone, Copy)]
pub(super) enum Agent<'p> {
    Weft,
    /// flanneld (weft-lab's flanneld mode), from this path.
    Flannel(&'p Path),
}

impl<'p> Agent<'p> {
    fn flanneld(self) -> Option<&'p Path> {
        match self {
            Agent::Weft => None,
            Agent::Flannel(p) => Some(p),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Agent::Weft => "weftd",
            Agent::Flannel(_) => "flanneld",
        }
    }
}

/// One lab node's agent, the store its peers are written into, and its
/// kernel seen from inside: what every control-plane measurement needs.
pub(super) struct Bench<'a, F: Feed> {
    pub ctx: &'a Ctx,
    pub lab: &'a mut Lab,
    pub feed: &'a F,
    pub watcher: &'a Watcher,
}

impl<F: Feed> Bench<'_, F> {
    /// Cold starts at `k` peers; leaves an agent running. Baseline: the
    /// same entries through bare netlink batches, between stop and start.
    /// With `flannel`, flanneld's cold starts too, alternating with weftd's
    /// (weftd first in even runs, flanneld first in odd ones).
    fn cold_starts(&mut self, at: &mut AtK, mut flannel: Option<(&Path, &mut AtK)>) -> Result<()> {
        let k = at.k;
        for run in 0..self.ctx.runs {
            self.ctx.say(format!(
                "scale: K = {k}: cold start {}/{}",
                run + 1,
                self.ctx.runs
            ));
            let weft_first = run % 2 == 0;
            for weft in [weft_first, !weft_first] {
                if weft {
                    self.cold_start(Agent::Weft, at, |at| {
                        at.raw_ms.push(ms(raw_install(k)?));
                        Ok(())
                    })?;
                } else if let Some((path, fat)) = &mut flannel {
                    self.cold_start(Agent::Flannel(path), fat, |_| Ok(()))?;
                }
            }
        }
        Ok(())
    }

    /// Makes `agent` the one running on the node, holding `k` peers.
    pub fn ensure(&mut self, agent: Agent<'_>, k: u32) -> Result<()> {
        let running = self.lab.agent_running(NODE)?;
        if running && self.lab.state().flanneld.as_deref() == agent.flanneld() {
            return Ok(());
        }
        self.ctx
            .say(format!("scale: K = {k}: switching to {}", agent.name()));
        if running {
            self.lab.kill_agent(NODE, Signal::SIGTERM)?;
        }
        self.lab.set_flanneld(agent.flanneld())?;
        self.lab.start_agent(NODE)?;
        self.wait_routes(k as usize)
    }

    /// One cold start of `agent` at `at.k` peers: the running agent
    /// stopped and `flannel.1` deleted, `while_stopped` run, `agent`
    /// started; the time until it is ready and until every entry is in,
    /// and its memory a second later.
    pub fn cold_start(
        &mut self,
        agent: Agent<'_>,
        at: &mut AtK,
        while_stopped: impl FnOnce(&mut AtK) -> Result<()>,
    ) -> Result<()> {
        let k = at.k;
        let readyz = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, HEALTH_PORT));
        if self.lab.agent_running(NODE)? {
            self.lab.kill_agent(NODE, Signal::SIGTERM)?;
        }
        self.lab.set_flanneld(agent.flanneld())?;
        self.watcher.delete_vxlan()?;
        while_stopped(at)?;
        std::thread::sleep(Duration::from_millis(300));
        let last = k.checked_sub(1).map(Peer::new);
        let probe = last.map_or((readyz.ip(), readyz.ip()), |p| (p.probe(), p.gateway()));
        let t0 = Instant::now();
        let rx = self.watcher.cold_start(t0, readyz, probe, k as usize)?;
        self.lab.start_agent(NODE)?;
        let cold = rx
            .recv_timeout(Duration::from_secs(150))
            .map_err(|_| anyhow!("the cold start at K = {k} did not finish"))??;
        // A baseline only when `while_stopped` measured one for this start.
        let raw = (at.raw_ms.len() > at.cold_ms.len())
            .then(|| at.raw_ms.last().copied())
            .flatten()
            .map_or(String::new(), |r| format!(" (bare netlink {r:.0} ms)"));
        self.ctx.say(format!(
            "scale: K = {k}: {}: ready {:.0} ms, last route {:.0} ms, all {} × 3 entries {:.0} ms{raw}",
            agent.name(),
            ms(cold.ready),
            ms(cold.last_route),
            cold.counts.routes,
            ms(cold.complete),
        ));
        at.cold_ms.push(ms(cold.complete));
        at.ready_ms.push(ms(cold.ready));
        std::thread::sleep(Duration::from_secs(1));
        let m = probe::memory_kib(agent_pid(self.lab)?)?;
        at.rss_kib.push(m.rss as f64);
        at.hwm_kib.push(m.peak as f64);
        at.anon_kib.push(m.anon as f64);
        Ok(())
    }

    /// `samples` new peers, one at a time, on the running agent holding
    /// `at.k` peers; the one-off peers are removed afterwards.
    pub fn new_leases(&mut self, at: &mut AtK, samples: u32) -> Result<()> {
        self.ctx.say(format!(
            "scale: K = {}: {samples} new peers, one at a time ({})",
            at.k,
            if self.lab.state().flanneld.is_some() {
                "flanneld"
            } else {
                "weftd"
            }
        ));
        let mut gap = Duration::from_millis(100);
        let peers: Vec<Peer> = (0..samples).map(|s| Peer::new(SAMPLE_BASE + s)).collect();
        for p in &peers {
            let rx = self.watcher.route(p.probe(), p.gateway())?;
            let put = self.feed.add_timed(p)?;
            let appeared = rx
                .recv_timeout(Duration::from_secs(150))
                .map_err(|_| anyhow!("no answer about the route to {}", p.subnet))??;
            let lat = appeared.saturating_duration_since(put.sent);
            at.lease_ms.push(ms(lat));
            at.watch_ms
                .push(ms(put.confirmed.saturating_duration_since(put.sent)));
            gap = gap.max(lat * 3);
            std::thread::sleep(gap);
        }
        self.feed.remove(&peers)?;
        self.wait_routes(at.k as usize)
    }

    fn wait_routes(&self, n: usize) -> Result<()> {
        let start = Instant::now();
        loop {
            let c = self.watcher.counts()?;
            if c.routes == n && c.all(n) {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the node holds {c:?}, expected {n} of each");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// CPU of passes with nothing to change (see [`PassCpu`]), on the agent
    /// holding `at.k` peers whose new-peer latencies are in `at`.
    pub fn pass_cpu(&mut self, at: &AtK) -> Result<PassCpu> {
        let triggers = if self.ctx.short { 10 } else { 20 };
        self.ctx.say(format!(
            "scale: K = {}: CPU per pass, {triggers} triggers",
            at.k
        ));
        let median_lat = percentile(&at.lease_ms, 50.0).unwrap_or(10.0);
        let gap = Duration::from_secs_f64((median_lat * 4.0 / 1e3).max(0.06));
        let pid = agent_pid(self.lab)?;
        let window = gap * triggers as u32;

        let c0 = probe::cpu_ns(pid)?;
        std::thread::sleep(window);
        let idle = probe::cpu_ns(pid)?.saturating_sub(c0) as f64;

        let peer = Peer::new(0);
        let m0 = metrics(self.lab)?;
        let c0 = probe::cpu_ns(pid)?;
        for n in 0..triggers {
            self.feed.renew(&peer, n)?;
            std::thread::sleep(gap);
        }
        let store_cpu = probe::cpu_ns(pid)?.saturating_sub(c0) as f64;
        let m1 = metrics(self.lab)?;
        let store_passes = m1.passes - m0.passes;

        let c0 = probe::cpu_ns(pid)?;
        for n in 0..triggers {
            self.feed.skip(n)?;
            std::thread::sleep(gap);
        }
        let full_cpu = probe::cpu_ns(pid)?.saturating_sub(c0) as f64;
        let m2 = metrics(self.lab)?;
        let passes = m2.passes - m1.passes;
        self.feed.unskip()?;
        let n = triggers as f64;
        // Each window costs n store-side events plus its passes (a resync
        // can fall into either window): two equations, two unknowns.
        //   store window: store_cpu - idle = n·store + store_passes·pass
        //   pass window:  full_cpu  - idle = n·store + passes·pass
        let extra_passes = passes - store_passes;
        if extra_passes < 1.0 {
            bail!("rewriting a skipped peer triggered no reconcile pass (beyond resyncs)");
        }
        let pass_us = ((full_cpu - store_cpu) / 1e3 / extra_passes).max(0.0);
        let store_us = (((store_cpu - idle) / 1e3 - store_passes * pass_us) / n).max(0.0);
        if store_passes > 0.0 {
            self.ctx.say(format!(
                "scale: K = {}: {store_passes} resync pass(es) fell into the store window; subtracted",
                at.k
            ));
        }
        Ok(PassCpu {
            store_us,
            pass_us,
            pass_us_per_peer: pass_us / f64::from(at.k),
            pass_wall_us: finite((m2.seconds - m1.seconds) / passes * 1e6),
            triggers,
            passes,
        })
    }
}

/// A one-node vxlan lab named `name` on `store`, its agent (weftd from
/// `bin_dir`) answering `/metrics` on [`HEALTH_PORT`].
pub(super) fn lab_up(ctx: &Ctx, name: &str, store: StoreKind, bin_dir: &Path) -> Result<Lab> {
    let mut spec = LabSpec::new(name)?;
    spec.nodes = 1;
    spec.pods_per_node = 0;
    spec.backend = Backend::Vxlan;
    spec.store = store;
    spec.bin_dir = bin_dir.to_owned();
    spec.agent_args = vec![format!("--healthz-port={HEALTH_PORT}")];
    if ctx.flanneld.is_some() {
        // flanneld reads every peer's TTL (one etcd call each) before it
        // writes subnet.env: at 10 000 peers that may outlast the default.
        spec.ready_timeout = Duration::from_secs(120);
    }
    ctx.say(format!("bringing lab {name} up (1 node, {store})"));
    Lab::up(&spec).with_context(|| format!("the lab {name} did not come up"))
}

/// Runs the whole scale sequence (the idle agent, K = 0, first) and
/// weftd's footprint.
pub fn run(ctx: &Ctx) -> Result<Scale> {
    let sizes: &[u32] = &ctx.peers;
    let mut lab = lab_up(ctx, "bench-scale", StoreKind::Etcd, &ctx.bin_dir)?;
    let max = sizes.iter().copied().max().unwrap_or(0);
    let result = prepare(&mut lab, max).and_then(|(feed, watcher)| {
        let mut b = Bench {
            ctx,
            lab: &mut lab,
            feed: &feed,
            watcher: &watcher,
        };
        measure_all(&mut b, sizes)
    });
    if ctx.keep {
        ctx.say("scale: lab bench-scale left up (--keep); `weft lab down --name bench-scale` removes it");
    } else if let Err(e) = lab.down() {
        ctx.say(format!("scale: teardown: {e}"));
    }
    let measured = result?;
    Ok(Scale {
        runs: ctx.runs,
        at_k: measured.iter().map(|(weft, _)| summarize(weft)).collect(),
        exec_ms: footprint::exec_ms(&ctx.bin_dir.join("weftd"), ctx.runs),
        sizes: footprint::sizes(&ctx.bin_dir),
        flannel: ctx.flanneld.as_ref().map(|_| FlannelScale {
            at_k: measured
                .iter()
                .filter_map(|(weft, flannel)| Some(vs_flannel::compare(weft, flannel.as_ref()?)))
                .collect(),
        }),
    })
}

/// The figures of one K from its samples.
pub(super) fn summarize(at: &AtK) -> results::AtK {
    let mib = |v: &[f64]| Summary::of(&v.iter().map(|x| x / 1024.0).collect::<Vec<_>>());
    let p = |v: &[f64], q| percentile(v, q);
    results::AtK {
        k: at.k,
        cold_ms: Summary::of(&at.cold_ms),
        raw_ms: Summary::of(&at.raw_ms),
        cold_ratio: Summary::of(&ratios(&at.cold_ms, &at.raw_ms)),
        ready_ms: Summary::of(&at.ready_ms),
        rss_mib: mib(&at.rss_kib),
        anon_mib: mib(&at.anon_kib),
        peak_mib: mib(&at.hwm_kib),
        lease: (at.k > 0).then(|| LeaseLatency {
            samples: at.lease_ms.len(),
            route_p50_ms: p(&at.lease_ms, 50.0),
            route_p99_ms: p(&at.lease_ms, 99.0),
            watch_p50_ms: p(&at.watch_ms, 50.0),
            watch_p99_ms: p(&at.watch_ms, 99.0),
            own_p50_ms: p(&at.lease_ms, 50.0)
                .zip(p(&at.watch_ms, 50.0))
                .map(|(a, b)| a - b),
        }),
        cpu: at.cpu,
    }
}

/// Stops the agent of [`NODE`], once sure that its subnet leaves room for
/// `max` synthetic peers (a rejected peer must not count as missing).
pub(super) fn stop_for_peers(lab: &mut Lab, max: u32) -> Result<()> {
    let own = lab
        .node(NODE)?
        .subnets
        .first()
        .copied()
        .ok_or_else(|| anyhow!("{NODE} has no subnet"))?;
    if leases::collides(own, max) {
        bail!("{NODE}'s subnet {own} collides with the synthetic peers: run again");
    }
    lab.kill_agent(NODE, Signal::SIGTERM)?;
    Ok(())
}

/// Stops the agent, switches the cluster to the big network, empties the
/// subnet directory, and opens the store and the node's kernel.
fn prepare(lab: &mut Lab, max: u32) -> Result<(Store, Watcher)> {
    stop_for_peers(lab, max)?;
    let store = Store::open(&lab.netns_of("store")?)?;
    store.set_config(NET_CONF)?;
    store.delete_prefix(&etcd_key::subnets_dir(etcd_key::DEFAULT_PREFIX))?;
    let watcher = Watcher::open(lab.node_netns(NODE)?)?;
    Ok((store, watcher))
}

/// weftd's samples at each K (the idle agent first), with flanneld's where
/// it is measured.
fn measure_all(b: &mut Bench<'_, Store>, sizes: &[u32]) -> Result<Vec<(AtK, Option<AtK>)>> {
    let flanneld = b.ctx.flanneld.clone();
    let flannel_at = |k: u32| {
        flanneld
            .as_deref()
            .filter(|_| vs_flannel::measured_at(sizes, k))
    };
    let mut out = Vec::new();
    let mut idle = AtK::default();
    let mut f_idle = flannel_at(0).map(|_| AtK::default());
    b.cold_starts(&mut idle, flannel_at(0).zip(f_idle.as_mut()))?;
    out.push((idle, f_idle));
    let mut written = 0u32;
    for &k in sizes {
        b.ctx
            .say(format!("scale: writing peers {written}..{k} into etcd"));
        let kvs: Vec<(String, String)> = (written..k.saturating_sub(1))
            .map(|i| {
                let p = Peer::new(i);
                (p.key(), p.value())
            })
            .collect();
        b.feed.put(kvs)?;
        // The last peer alone, so it is the newest lease: programmed last.
        let last = Peer::new(k - 1);
        b.feed.put(vec![(last.key(), last.value())])?;
        written = k;
        let mut at = AtK {
            k,
            ..AtK::default()
        };
        let mut f_at = flannel_at(k).map(|_| AtK {
            k,
            ..AtK::default()
        });
        b.cold_starts(&mut at, flannel_at(k).zip(f_at.as_mut()))?;
        let samples = if b.ctx.short { 20 } else { 50 };
        if let (Some(path), Some(f)) = (flannel_at(k), f_at.as_mut()) {
            b.ensure(Agent::Flannel(path), k)?;
            b.new_leases(f, samples)?;
        }
        b.ensure(Agent::Weft, k)?;
        b.new_leases(&mut at, samples)?;
        at.cpu = Some(b.pass_cpu(&at)?);
        out.push((at, f_at));
    }
    Ok(out)
}
