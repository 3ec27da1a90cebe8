//! The control plane with the Kubernetes store at K = 5 000 peer Nodes:
//! one weftd (vxlan, `--kube-subnet-mgr`) on a lab node, the lab's
//! Kubernetes API test server pre-filled with K kubectl-shaped Nodes
//! carrying flannel's annotations (`kube_api.rs`).
//!
//! What the peer snapshot publisher decides, measured with the scale
//! part's machinery (`scale.rs`, over the [`Feed`] seam): (a) a new Node →
//! its route on the agent's node, ~30 samples; (b) CPU of a Node event
//! that changes no lease (a status update: the store side alone, no pass)
//! and of a pass with nothing to change (a skipped Node's new version);
//! and on the way the start until every entry is in, and memory.
//!
//! With `--baseline-bin-dir`, an earlier build's weftd is measured in the
//! same runs: each build has its own lab (its own API server, filled
//! alike), only one agent runs at a time, and each run measures both back
//! to back (in alternating order), so that the ratios taken run by run see
//! the same load on both sides.
//!
//! [`Feed`]: super::feed::Feed

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use weft_bench::results::{KubeFigures, KubeScale, NodeRoute, PassCpu};
use weft_bench::stats::{Summary, percentile, ratios};
use weft_lab::{Lab, Signal, StoreKind, StoreState};

use super::Ctx;
use super::kube_api::KubeApi;
use super::leases::NET_CONF;
use super::scale::{Agent, AtK, Bench, NODE, lab_up, stop_for_peers};
use super::watcher::Watcher;

/// One weftd under measurement, with its lab.
struct Build {
    label: String,
    bin_dir: PathBuf,
    lab: Option<Lab>,
    api: Option<KubeApi>,
    watcher: Option<Watcher>,
    at: AtK,
    cpu: Vec<PassCpu>,
}

impl Build {
    fn new(label: &str, bin_dir: PathBuf, k: u32) -> Build {
        Build {
            label: label.to_owned(),
            bin_dir,
            lab: None,
            api: None,
            watcher: None,
            at: AtK {
                k,
                ..AtK::default()
            },
            cpu: Vec::new(),
        }
    }

    /// Brings its lab up, stops the agent, points net-conf.json at the
    /// big network and registers the K peers.
    fn prepare(&mut self, ctx: &Ctx, name: &str) -> Result<()> {
        let mut lab = lab_up(ctx, name, StoreKind::Kube, &self.bin_dir)?;
        let k = self.at.k;
        let result = (|| -> Result<(KubeApi, Watcher)> {
            stop_for_peers(&mut lab, k)?;
            let StoreState::Kube(store) = &lab.state().store else {
                bail!("lab {name} does not run the Kubernetes store");
            };
            std::fs::write(&store.net_conf_path, NET_CONF)?;
            let api = KubeApi::of(&lab)?;
            ctx.say(format!("kube-scale: {name}: registering {k} peer Nodes"));
            api.add_peers(0, k)?;
            Ok((api, Watcher::open(lab.node_netns(NODE)?)?))
        })();
        // Kept even when preparing failed, so that it is taken down.
        self.lab = Some(lab);
        let (api, watcher) = result?;
        self.api = Some(api);
        self.watcher = Some(watcher);
        Ok(())
    }

    /// One run: start, `samples` new Nodes, CPU per event and per pass, stop.
    fn measure(&mut self, ctx: &Ctx, samples: u32) -> Result<()> {
        let (Some(lab), Some(feed), Some(watcher)) = (&mut self.lab, &self.api, &self.watcher)
        else {
            bail!("the lab of {} is not prepared", self.label);
        };
        ctx.say(format!("kube-scale: {}", self.label));
        let mut b = Bench {
            ctx,
            lab,
            feed,
            watcher,
        };
        b.cold_start(Agent::Weft, &mut self.at, |_| Ok(()))?;
        b.new_leases(&mut self.at, samples)?;
        self.cpu.push(b.pass_cpu(&self.at)?);
        b.lab.kill_agent(NODE, Signal::SIGTERM)?;
        Ok(())
    }

    fn down(&mut self, ctx: &Ctx) {
        if let Some(lab) = self.lab.take() {
            let name = lab.name().to_string();
            self.watcher.take();
            if ctx.keep {
                ctx.say(format!(
                    "kube-scale: lab {name} left up (--keep); `weft lab down --name {name}` removes it"
                ));
            } else if let Err(e) = lab.down() {
                ctx.say(format!("kube-scale: teardown of {name}: {e}"));
            }
        }
    }

    fn store_us(&self) -> Vec<f64> {
        self.cpu.iter().map(|c| c.store_us).collect()
    }

    /// A change's whole cost: [`PassCpu`] splits it into the store side of
    /// a no-change event and the rest, but only in the build where a
    /// no-change event publishes nothing is the rest the pass alone.
    fn change_us(&self) -> Vec<f64> {
        self.cpu.iter().map(|c| c.store_us + c.pass_us).collect()
    }

    fn figures(&self) -> KubeFigures {
        let at = &self.at;
        let p = |q| percentile(&at.lease_ms, q);
        KubeFigures {
            label: self.label.clone(),
            cold_ms: Summary::of(&at.cold_ms),
            rss_mib: Summary::of(&at.rss_kib.iter().map(|x| x / 1024.0).collect::<Vec<_>>()),
            route: NodeRoute {
                samples: at.lease_ms.len(),
                p50_ms: p(50.0),
                p90_ms: p(90.0),
                max_ms: p(100.0),
                api_p50_ms: percentile(&at.watch_ms, 50.0),
            },
            store_us: Summary::of(&self.store_us()),
            change_us: Summary::of(&self.change_us()),
            pass_wall_us: Summary::of(
                &self
                    .cpu
                    .iter()
                    .filter_map(|c| c.pass_wall_us)
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

/// Peers, and new Nodes per build over the whole part.
fn sizes(ctx: &Ctx) -> (u32, u32) {
    if ctx.short { (1_000, 12) } else { (5_000, 30) }
}

pub fn run(ctx: &Ctx) -> Result<KubeScale> {
    let (k, samples) = sizes(ctx);
    let per_run = samples.div_ceil(ctx.runs.max(1) as u32);
    let mut builds = Vec::new();
    if let Some(dir) = &ctx.baseline_bin_dir {
        builds.push((
            "bench-kube-base",
            Build::new(&ctx.baseline_label, dir.clone(), k),
        ));
    }
    builds.push((
        "bench-kube",
        Build::new("this build", ctx.bin_dir.clone(), k),
    ));
    let result = (|| -> Result<()> {
        for (name, b) in &mut builds {
            b.prepare(ctx, name)?;
        }
        for run in 0..ctx.runs {
            ctx.say(format!("kube-scale: run {}/{}", run + 1, ctx.runs));
            let order: Vec<usize> = if run % 2 == 0 {
                (0..builds.len()).collect()
            } else {
                (0..builds.len()).rev().collect()
            };
            for i in order {
                builds[i].1.measure(ctx, per_run)?;
            }
        }
        Ok(())
    })();
    for (_, b) in &mut builds {
        b.down(ctx);
    }
    result?;
    let subject = builds
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow!("nothing was measured"))?;
    let baseline = builds.pop().map(|(_, b)| b);
    let ratio = |f: fn(&Build) -> Vec<f64>| {
        baseline
            .as_ref()
            .and_then(|base| Summary::of(&ratios(&f(&subject), &f(base))))
    };
    let route_p50 = |b: &Build| percentile(&b.at.lease_ms, 50.0);
    Ok(KubeScale {
        k,
        runs: ctx.runs,
        cold_ratio: ratio(|b| b.at.cold_ms.clone()),
        store_ratio: ratio(Build::store_us),
        change_ratio: ratio(Build::change_us),
        route_p50_ratio: baseline
            .as_ref()
            .and_then(route_p50)
            .zip(route_p50(&subject))
            .map(|(base, sub)| sub / base),
        subject: subject.figures(),
        baseline: baseline.as_ref().map(Build::figures),
    })
}
