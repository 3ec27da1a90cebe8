//! etcd failover: how long the agents of a lab are blind when a member of
//! a three-member etcd is lost (issue 23; docs/RELIABILITY.md explains
//! how the agent picks members).
//!
//! Leader killed: the leader is first moved to a member that carries
//! agents' watches (etcd's own watch-stream gauge says which), then
//! SIGKILLed; a lease is put through the survivors at once, retried until
//! the new leader takes it, and the clock runs until every node routes it.
//! Baseline: the election itself, from the kill until a running member
//! reports a leader. The agents' own share is from etcd taking the lease to
//! the last node routing it. Member cut off: the member carrying watches
//! loses its underlay port (the process runs on); a lease put through the
//! others, and the clock runs until every node routes it (once per run of
//! the part: a cut-off member's gauge keeps the streams of the agents that
//! left it, so a second choice would be blind).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use weft_bench::results::EtcdHa;
use weft_bench::stats::Summary;
use weft_lab::{Backend, Lab, LabError, LabSpec, StoreKind};

use super::Ctx;

const NAME: &str = "bench-etcd-ha";
const NODES: [&str; 3] = ["node1", "node2", "node3"];
const SUBNETS: &str = "/coreos.com/network/subnets/";

pub fn run(ctx: &Ctx) -> Result<EtcdHa> {
    let mut spec = LabSpec::new(NAME)?;
    spec.bin_dir = ctx.bin_dir.clone();
    spec.backend = Backend::Vxlan;
    spec.store = StoreKind::Etcd;
    spec.etcd_members = 3;
    spec.pods_per_node = 0;
    let _ = Lab::down_by_name(NAME);
    let mut lab = Lab::up(&spec).context("cannot bring the etcd HA lab up")?;
    let result = measure(ctx, &mut lab);
    let _ = lab.down();
    result
}

fn measure(ctx: &Ctx, lab: &mut Lab) -> Result<EtcdHa> {
    let (mut elected, mut routed, mut agents) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ctx.runs {
        let subnet = format!("10.244.{}.0/24", 200 + round);
        move_leader(lab, &member_with_watches(lab)?)?;
        let killed_at = Instant::now();
        let leader = lab.kill_etcd_leader()?;
        let survivors: Vec<String> = names(lab).into_iter().filter(|m| *m != leader).collect();
        let (election, written) = std::thread::scope(|s| -> Result<(Duration, Duration)> {
            let writer = s.spawn(|| -> Result<Duration> {
                put_peer(lab, &survivors, &subnet, "300ms")?;
                Ok(killed_at.elapsed())
            });
            until(Duration::from_secs(20), "a new leader", || {
                Ok(lab.etcd_leader()?.is_some())
            })?;
            let election = killed_at.elapsed();
            let written = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
            Ok((election, written))
        })?;
        until(
            Duration::from_secs(30),
            "every node to route the lease",
            || routed_everywhere(lab, &subnet),
        )?;
        let done = killed_at.elapsed();
        ctx.say(format!(
            "etcd leader {leader} killed: a new leader after {election:.2?}, the lease taken after \
             {written:.2?}, routed on every node after {done:.2?}"
        ));
        elected.push(election.as_secs_f64());
        routed.push(done.as_secs_f64());
        agents.push(done.saturating_sub(written).as_secs_f64() * 1e3);
        lab.start_etcd_member(&leader)?;
    }
    // Once, last: a member cut off keeps the streams of agents that left it
    // in its gauge, which would mislead the choice of the next one.
    let mut cut = Vec::new();
    {
        let subnet = "10.244.220.0/24";
        let member = member_with_watches(lab)?;
        let others: Vec<String> = names(lab).into_iter().filter(|m| *m != member).collect();
        lab.partition_etcd_member(&member)?;
        let cut_at = Instant::now();
        put_peer(lab, &others, subnet, "1s")?;
        until(
            Duration::from_secs(60),
            "every node to route the lease",
            || routed_everywhere(lab, subnet),
        )?;
        let took = cut_at.elapsed();
        ctx.say(format!(
            "etcd member {member} cut off: every node routed a new lease after {took:.2?}"
        ));
        cut.push(took.as_secs_f64());
        lab.heal_etcd_member(&member)?;
        until(Duration::from_secs(30), "the member to serve again", || {
            Ok(etcdctl(lab, std::slice::from_ref(&member), &["endpoint", "health"])?.is_some())
        })?;
    }
    Ok(EtcdHa {
        members: 3,
        nodes: NODES.len(),
        election_s: Summary::of(&elected),
        routed_s: Summary::of(&routed),
        agents_ms: Summary::of(&agents),
        cut_off_s: Summary::of(&cut),
    })
}

fn names(lab: &Lab) -> Vec<String> {
    lab.etcd_members().iter().map(|m| m.name.clone()).collect()
}

/// Polls `cond` every 20 ms until it holds, or fails after `limit`.
fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !cond()? {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs a command in a lab namespace; its output.
fn run_in(lab: &Lab, target: &str, argv: &[String]) -> Result<std::process::Output> {
    let argv = argv.to_vec();
    Ok(lab.in_netns(target, move || {
        Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| LabError::io(format!("cannot run {}", argv[0]), e))
    })?)
}

/// etcdctl from the underlay against `members`: stdout if it succeeded.
fn etcdctl(lab: &Lab, members: &[String], args: &[&str]) -> Result<Option<String>> {
    let endpoints: Vec<String> = lab
        .etcd_members()
        .iter()
        .filter(|m| members.contains(&m.name))
        .map(|m| m.client_url.clone())
        .collect();
    let mut argv = vec![
        "etcdctl".to_owned(),
        format!("--endpoints={}", endpoints.join(",")),
        "--command-timeout=1s".to_owned(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = run_in(lab, "underlay", &argv)?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// A fake vxlan peer lease, put until etcd takes it (each attempt given
/// `timeout`: a short one lands soon after an election).
fn put_peer(lab: &Lab, members: &[String], subnet: &str, timeout: &str) -> Result<()> {
    let key = format!("{SUBNETS}{}", subnet.replace('/', "-"));
    let value = r#"{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:42:00:00:00:77"}}"#;
    let timeout = format!("--command-timeout={timeout}");
    until(Duration::from_secs(30), "etcd to take a lease", || {
        Ok(etcdctl(lab, members, &[&timeout, "put", &key, value])?.is_some())
    })
}

fn routed_everywhere(lab: &Lab, subnet: &str) -> Result<bool> {
    for node in NODES {
        let argv: Vec<String> = ["ip", "-4", "route", "show", "dev", "flannel.1"]
            .map(str::to_owned)
            .to_vec();
        let out = run_in(lab, node, &argv)?;
        let routes = String::from_utf8_lossy(&out.stdout);
        if !routes
            .lines()
            .any(|l| l.split_whitespace().next() == Some(subnet))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The member holding most of the agents' watch streams (etcd's own gauge).
fn member_with_watches(lab: &Lab) -> Result<String> {
    let mut best = (0u64, String::new());
    for m in lab.etcd_members() {
        let argv = [
            "curl".to_owned(),
            "-s".to_owned(),
            "--max-time".to_owned(),
            "2".to_owned(),
            format!("{}/metrics", m.client_url),
        ];
        let out = run_in(lab, "underlay", &argv)?;
        let streams = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watch_stream_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if streams >= best.0 {
            best = (streams, m.name.clone());
        }
    }
    Ok(best.1)
}

/// Makes `member` the leader (`etcdctl move-leader`).
fn move_leader(lab: &Lab, member: &str) -> Result<()> {
    if lab.etcd_leader()?.as_deref() == Some(member) {
        return Ok(());
    }
    let all = names(lab);
    let list = etcdctl(lab, &all, &["member", "list"])?.unwrap_or_default();
    let Some(id) = list
        .lines()
        .find(|l| l.split(", ").nth(2) == Some(member))
        .and_then(|l| l.split(',').next())
    else {
        bail!("{member} is not in etcd's member list: {list}");
    };
    let id = id.to_owned();
    until(Duration::from_secs(10), "the leadership to move", || {
        Ok(etcdctl(lab, &all, &["move-leader", &id])?.is_some()
            || lab.etcd_leader()?.as_deref() == Some(member))
    })
}
