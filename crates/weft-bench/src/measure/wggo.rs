//! weft's userspace WireGuard against Debian's `wireguard-go`, between the
//! same two nodes at the same time.
//!
//! Both tunnels run side by side in the wireguard lab: weft's `flannel-wg`
//! (the agents' own, port 51820) and a `wgo0` run by wireguard-go on each
//! node (port 51821, its own keys, addresses 172.31.255.<n>/32 that exist
//! only inside the lab's namespaces). The same iperf3 and echo servers on
//! node2 answer through either tunnel, chosen by the destination address:
//! node2's `flannel-wg` address goes through weft, 172.31.255.2 through
//! wireguard-go. Side by side rather than one after the other, so that
//! both are measured run by run under the same load, with no agent
//! restart between them.
//!
//! wireguard-go and `wg` are fixtures here (the reference being compared
//! against), started in each node's own `/run` as the interop test does.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use ipnet::IpNet;
use weft_bench::results::PathComparison;
use weft_core::wg_key::WgKey;
use weft_dataplane::netlink::{RouteSpec, Scope};
use weft_dataplane::wireguard::PrivateKey;
use weft_lab::{Lab, LabError, Signal, with_netlink};

use super::Ctx;
use super::dataplane::{Path, PathSamples, compare as compare_paths, measure_pair};

use super::traffic::wait_reachable;

const DEV: &str = "wgo0";
const PORT: u16 = 51821;
/// `RTPROT_STATIC`: not weft's protocol, so the agent leaves the route be.
const PROTO_STATIC: u8 = 4;

fn tunnel_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, 255, n)
}

/// A fresh clamped Curve25519 private key: (private base64, public base64).
fn keypair() -> Result<(String, String)> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
    let public = PrivateKey::from_bytes(bytes).public_key().to_base64();
    Ok((WgKey(bytes).to_base64(), public))
}

fn exec(lab: &Lab, node: &str, script: &str) -> Result<()> {
    let argv = ["sh".to_owned(), "-c".into(), script.to_owned()];
    let status = lab.exec(node, &argv)?;
    if !status.success() {
        bail!("on {node}: `{script}` failed ({status})");
    }
    Ok(())
}

/// wireguard-go on both nodes, configured as a pair; returns their pids.
fn start(lab: &Lab) -> Result<Vec<i32>> {
    let keys = [keypair()?, keypair()?];
    let mut pids = Vec::new();
    for (i, node) in ["node1", "node2"].iter().enumerate() {
        let dir = lab.node(node)?.dir.clone();
        let key_file = dir.join("wgo.key");
        std::fs::write(&key_file, &keys[i].0)?;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        let pid_file = dir.join("wgo.pid");
        let _ = std::fs::remove_file(&pid_file);
        exec(
            lab,
            node,
            &format!(
                "rm -f /run/wireguard/{DEV}.sock; WG_PROCESS_FOREGROUND=1 wireguard-go {DEV} \
                 >/dev/null 2>&1 & echo $! > {}",
                pid_file.display()
            ),
        )?;
        let pid: i32 = wait_for_pid(&pid_file)?;
        pids.push(pid);
        let sock = weft_lab::names::LabName::new(lab.name().as_str())?
            .node_paths(node)
            .run
            .join(format!("wireguard/{DEV}.sock"));
        wait_for(&sock.display().to_string(), || sock.exists())?;
        let other = 1 - i;
        exec(
            lab,
            node,
            &format!(
                "wg set {DEV} listen-port {PORT} private-key {} peer {} endpoint 192.0.2.{}:{PORT} \
                 allowed-ips {}/32",
                key_file.display(),
                keys[other].1,
                other + 1,
                tunnel_ip(other as u8 + 1)
            ),
        )?;
        let netns = lab.node_netns(node)?.to_owned();
        let (own, peer) = (tunnel_ip(i as u8 + 1), tunnel_ip(other as u8 + 1));
        with_netlink(&netns, |nl| async move {
            let nl_err = |what: &str, e| LabError::Invalid(format!("{what}: {e}"));
            let link = nl
                .link_by_name(DEV)
                .await
                .map_err(|e| nl_err("wgo0", e))?
                .ok_or_else(|| LabError::Invalid("wireguard-go made no wgo0".into()))?;
            let mtu = nl
                .link_by_name("flannel-wg")
                .await
                .map_err(|e| nl_err("flannel-wg", e))?
                .map_or(1420, |l| l.mtu);
            let host =
                |ip| IpNet::new(IpAddr::V4(ip), 32).map_err(|e| LabError::Invalid(e.to_string()));
            let (own_net, peer_net) = (host(own)?, host(peer)?);
            nl.set_link_mtu(link.index, mtu)
                .await
                .map_err(|e| nl_err("mtu", e))?;
            nl.add_address(link.index, own_net)
                .await
                .map_err(|e| nl_err("address", e))?;
            nl.set_link_up(link.index)
                .await
                .map_err(|e| nl_err("up", e))?;
            let route = RouteSpec::unicast(peer_net)
                .dev(link.index)
                .scope(Scope::Link)
                .protocol(PROTO_STATIC);
            nl.replace_route(&route)
                .await
                .map_err(|e| nl_err("route", e))
        })?;
    }
    Ok(pids)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    for _ in 0..100 {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out waiting for {what}")
}

fn wait_for_pid(path: &std::path::Path) -> Result<i32> {
    let mut pid = None;
    wait_for(&path.display().to_string(), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    })?;
    pid.ok_or_else(|| anyhow!("no pid in {}", path.display()))
}

/// node2's address on weft's `flannel-wg`: traffic to it from node1 goes
/// through weft's tunnel.
fn weft_tunnel_ip(lab: &Lab) -> Result<IpAddr> {
    let netns = lab.node_netns("node2")?.to_owned();
    with_netlink(&netns, |nl| async move {
        let e = |e| LabError::Invalid(format!("flannel-wg: {e}"));
        let link = nl
            .link_by_name("flannel-wg")
            .await
            .map_err(e)?
            .ok_or_else(|| LabError::Invalid("node2 has no flannel-wg".into()))?;
        let addrs = nl.addresses(link.index).await.map_err(e)?;
        addrs
            .iter()
            .map(|a| a.prefix.addr())
            .find(IpAddr::is_ipv4)
            .ok_or_else(|| LabError::Invalid("flannel-wg on node2 has no IPv4 address".into()))
    })
    .map_err(Into::into)
}

/// Measures both tunnels run by run; wireguard-go is stopped afterwards.
pub fn compare(ctx: &Ctx, lab: &Lab) -> Result<PathComparison> {
    ctx.say("WireGuard: starting wireguard-go next to weft's tunnel on both nodes");
    let pids = start(lab).context("cannot set wireguard-go up")?;
    let result = measure(ctx, lab);
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    }
    result
}

fn measure(ctx: &Ctx, lab: &Lab) -> Result<PathComparison> {
    let weft = Path {
        from: "node1",
        to: weft_tunnel_ip(lab)?,
    };
    let wgo = Path {
        from: "node1",
        to: IpAddr::V4(tunnel_ip(2)),
    };
    for p in [&weft, &wgo] {
        wait_reachable(lab, p.from, p.to, Duration::from_secs(20))
            .with_context(|| format!("no traffic through the tunnel to {}", p.to))?;
    }
    let (mut sw, mut sg) = (PathSamples::default(), PathSamples::default());
    for run in 0..ctx.runs {
        ctx.say(format!(
            "WireGuard: run {}/{}: weft userspace vs wireguard-go, node → node",
            run + 1,
            ctx.runs
        ));
        measure_pair(ctx, lab, (&weft, &wgo), run % 2 == 1, (&mut sw, &mut sg))?;
    }
    Ok(compare_paths(&sw, &sg))
}
