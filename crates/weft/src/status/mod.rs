//! `weft status`: what the agent believes next to what the kernel holds.
//!
//! It reads the agent's local API (`GET /v1/status` on its root-only
//! socket) and, through netlink, the routes, neighbours, FDB entries and
//! devices of this network namespace, then judges them with the
//! reconciler's own diff (`drift.rs`). It changes nothing.

mod drift;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;
use weft_core::status::{DesiredView, PeerView, StatusView, WgPeerView};

use drift::KernelDrift;

/// `println!` that ends quietly on a closed pipe.
macro_rules! say {
    ($($t:tt)*) => {{
        crate::out::line(&format!($($t)*));
    }};
}

/// One difference between desired and kernel state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: &'static str,
    pub what: String,
    pub problem: String,
}

/// One peer's row.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRow {
    pub id: String,
    pub subnets: Vec<String>,
    pub public_ip: Option<String>,
    pub public_ipv6: Option<String>,
    /// `programmed`, `drift` or `not programmed: <why>`.
    pub state: String,
    pub route: Option<bool>,
    pub neighbour: Option<bool>,
    pub fdb: Option<bool>,
    /// WireGuard: the device holds the peer as wanted.
    pub wireguard: Option<bool>,
    /// WireGuard: seconds since the last handshake (`None`: never).
    pub handshake_age_secs: Option<u64>,
    /// WireGuard: bytes received from and sent to the peer (summed over
    /// the devices holding it), `None` for other backends.
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    /// WireGuard: where the peer's packets really come from when that is
    /// not its lease's address (WireGuard roamed to it): the peer is
    /// behind a NAT that rewrote its port, or its advertised address
    /// (`--public-ip`) is stale.
    pub reached_at: Option<String>,
}

/// A WireGuard handshake older than this means the tunnel is not working
/// (WireGuard rekeys every 2 minutes while traffic flows).
const STALE_HANDSHAKE_SECS: u64 = 180;

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub agent: StatusView,
    pub peers: Vec<PeerRow>,
    pub drift: Vec<Drift>,
}

pub(crate) fn route_text(r: &weft_core::status::RouteView) -> String {
    match (&r.via, &r.dev) {
        _ if r.blackhole => format!("blackhole {}", r.dst),
        (Some(via), Some(dev)) => {
            let onlink = if r.onlink { " onlink" } else { "" };
            format!("{} via {via} dev {dev}{onlink}", r.dst)
        }
        (None, Some(dev)) => format!("{} dev {dev} scope link", r.dst),
        _ => r.dst.clone(),
    }
}

fn peer_row(
    p: &PeerView,
    desired: &DesiredView,
    k: &KernelDrift,
    wg_views: &[WgPeerView],
) -> PeerRow {
    let why_not = desired
        .unprogrammed
        .iter()
        .find(|u| u.id == p.id)
        .map(|u| u.detail.clone());
    let routes: Vec<_> = desired
        .routes
        .iter()
        .filter(|r| p.subnets.contains(&r.dst))
        .collect();
    let route_ok = (!routes.is_empty()).then(|| routes.iter().all(|r| k.route_ok(&r.dst)));
    let gateways: Vec<String> = p
        .subnets
        .iter()
        .filter_map(|s| s.split('/').next().map(str::to_owned))
        .collect();
    let neighs: Vec<_> = desired
        .neighbours
        .iter()
        .filter(|n| gateways.contains(&n.ip))
        .collect();
    let neigh_ok = (!neighs.is_empty()).then(|| neighs.iter().all(|n| k.neighbour_ok(&n.ip)));
    let publics: Vec<&String> = p.public_ip.iter().chain(p.public_ipv6.iter()).collect();
    let fdbs: Vec<_> = desired
        .fdb
        .iter()
        .filter(|f| publics.contains(&&f.dst))
        .collect();
    let fdb_ok = (!fdbs.is_empty()).then(|| fdbs.iter().all(|f| k.fdb_ok(&f.mac, &f.dst)));
    let wants: Vec<_> = desired
        .wireguard
        .iter()
        .filter(|w| w.peer == p.id)
        .collect();
    let held: Vec<&WgPeerView> = wants
        .iter()
        .filter_map(|w| {
            wg_views
                .iter()
                .find(|v| v.device == w.device && v.public_key == w.public_key)
        })
        .collect();
    let wg_ok = (!wants.is_empty()).then_some(held.len() == wants.len());
    let reached_at = wants.iter().find_map(|w| {
        wg_views
            .iter()
            .find(|v| v.device == w.device && v.public_key == w.public_key)
            .and_then(|v| v.endpoint.clone())
            .filter(|e| *e != w.endpoint)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let handshake_age_secs = held
        .iter()
        .filter_map(|v| v.last_handshake_unix)
        .max()
        .map(|t| now.saturating_sub(t));
    let stale = !wants.is_empty() && handshake_age_secs.is_none_or(|a| a > STALE_HANDSHAKE_SECS);
    let all_ok = [route_ok, neigh_ok, fdb_ok, wg_ok]
        .iter()
        .flatten()
        .all(|ok| *ok);
    let state = match (&why_not, all_ok) {
        (Some(why), _) => format!("not programmed: {why}"),
        (None, false) => "drift".to_owned(),
        (None, true) if stale => match handshake_age_secs {
            Some(a) => format!("handshake {a}s ago (stale)"),
            None => "no handshake yet".to_owned(),
        },
        (None, true) => "programmed".to_owned(),
    };
    PeerRow {
        id: p.id.clone(),
        subnets: p.subnets.clone(),
        public_ip: p.public_ip.clone(),
        public_ipv6: p.public_ipv6.clone(),
        state,
        route: route_ok,
        neighbour: neigh_ok,
        fdb: fdb_ok,
        wireguard: wg_ok,
        handshake_age_secs,
        rx_bytes: wg_ok.map(|_| held.iter().map(|v| v.rx_bytes).sum()),
        tx_bytes: wg_ok.map(|_| held.iter().map(|v| v.tx_bytes).sum()),
        reached_at,
    }
}

/// Builds the report: agent view, per-peer rows and every drift.
pub fn report(socket: &Path) -> Result<Report> {
    let resp = weft_lab::http::get(socket, "/v1/status", Duration::from_secs(5)).map_err(|e| {
        anyhow::anyhow!(
            "{e}: is weftd running on this node (and are you root)? see --status-socket"
        )
    })?;
    anyhow::ensure!(
        resp.status == 200,
        "the agent answered HTTP {}",
        resp.status
    );
    let agent: StatusView = serde_json::from_slice(&resp.body)
        .context("the agent's answer is not a status document")?;
    let desired = agent.desired.clone().unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let kernel = runtime.block_on(drift::read(&desired, &agent.wireguard_peers))?;
    let peers = agent
        .peers
        .iter()
        .map(|p| peer_row(p, &desired, &kernel, &agent.wireguard_peers))
        .collect();
    Ok(Report {
        ok: agent.ready && kernel.drift.is_empty() && agent.desired.is_some(),
        agent,
        peers,
        drift: kernel.drift,
    })
}

fn print_human(r: &Report) {
    let a = &r.agent;
    say!(
        "agent:   weftd {}, store {}, backend {}{}, {}",
        a.version,
        a.store,
        a.backend,
        a.backend_detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        if a.ready { "ready" } else { "NOT READY" }
    );
    if let Some(o) = &a.store_outage {
        say!(
            "store:   UNAVAILABLE for {}s ({}); the dataplane is kept as it was until it answers",
            o.for_secs,
            o.error
        );
    }
    match &a.lease {
        Some(l) => say!(
            "lease:   {} public {}{}",
            l.subnets.join(", "),
            [l.public_ip.clone(), l.public_ipv6.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
            match (l.reservation, l.expires_in_secs) {
                (true, _) => ", reservation (never expires)".to_owned(),
                (false, Some(s)) => format!(", expires in {}h{:02}m", s / 3600, (s % 3600) / 60),
                _ => String::new(),
            }
        ),
        None => say!("lease:   none yet"),
    }
    if let Some(made) = a.wireguard_key_made_unix {
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(made);
        say!(
            "wg key:  made or last rotated {}h{:02}m ago{}",
            age / 3600,
            (age % 3600) / 60,
            if a.wireguard_key_rotation_in_progress {
                ", rotation in progress (waiting for peers to handshake with the new key)"
            } else {
                ""
            }
        );
    }
    say!(
        "peers:   {} programmed, {} skipped",
        r.peers.len(),
        a.skipped.len()
    );
    for p in &r.peers {
        let mark = |v: Option<bool>| match v {
            Some(true) => "ok",
            Some(false) => "MISSING",
            None => "-",
        };
        let bytes = format!(
            " rx={} tx={}",
            p.rx_bytes.unwrap_or(0),
            p.tx_bytes.unwrap_or(0)
        );
        let wg = match (p.wireguard, p.handshake_age_secs) {
            (None, _) => String::new(),
            (Some(ok), Some(age)) => format!(" wg={} handshake={age}s{bytes}", mark(Some(ok))),
            (Some(ok), None) => format!(" wg={} handshake=never{bytes}", mark(Some(ok))),
        };
        say!(
            "  {:<44} {:<24} {:<16} route={} neigh={} fdb={}{wg}  {}",
            p.id,
            p.subnets.join(","),
            p.public_ip
                .clone()
                .or(p.public_ipv6.clone())
                .unwrap_or_default(),
            mark(p.route),
            mark(p.neighbour),
            mark(p.fdb),
            p.state
        );
        if let Some(at) = &p.reached_at {
            say!(
                "    reached at {at}, not at its lease's address: it is behind a NAT that \
                 rewrites its port, or its advertised address (--public-ip) is stale"
            );
        }
    }
    for s in &a.skipped {
        say!("  skipped {}: {}", s.id, s.detail);
    }
    if !a.ipsec_tunnels.is_empty() {
        say!("ipsec:   {} tunnel(s), reqid 11", a.ipsec_tunnels.len());
        for t in &a.ipsec_tunnels {
            say!(
                "  {:<56} ike={} child={} spi in/out={}/{} bytes in/out={}/{} kernel SAs={}",
                t.conn,
                or_none(&t.ike_state),
                or_none(&t.child_state),
                or_none(&t.spi_in),
                or_none(&t.spi_out),
                t.bytes_in,
                t.bytes_out,
                t.kernel_sas
            );
        }
    }
    if r.drift.is_empty() {
        say!("kernel:  matches what the agent wants");
    } else {
        say!(
            "kernel:  {} difference(s) from what the agent wants (the next resync repairs them):",
            r.drift.len()
        );
        for d in &r.drift {
            say!("  {} {}: {}", d.kind, d.what, d.problem);
        }
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

/// `weft status [--json]`. Exit 0 when the agent is ready and the kernel
/// matches; 1 otherwise.
pub fn run(socket: &Path, json: bool) -> ExitCode {
    match report(socket) {
        Ok(r) => {
            if json {
                match serde_json::to_string_pretty(&r) {
                    Ok(text) => {
                        crate::out::line(&text);
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print_human(&r);
            }
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
