//! The ipsec backend's dataplane, flannel's shape: weft installs the XFRM
//! policies itself (out, in, fwd per peer, ESP tunnel mode, reqid 11) and
//! hands charon, over VICI, one IKEv2 connection per peer with a PSK for
//! each public IP; charon negotiates and installs the SAs.
//!
//! Reconciled like the other backends, on every pass: policies are read
//! back and repaired, charon's connections and keys are listed and made
//! equal to the plan (a restarted charon gets everything again), and a
//! tunnel whose SAs vanished from the kernel while charon still counts
//! them installed is rekeyed, which installs new ones.

pub mod charon;
pub mod config;
pub mod vici;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use weft_core::plan::{IPSEC_REQID, IpsecTunnel, parse_conn_name};

use crate::netlink::NetlinkError;
use crate::netlink::xfrm::{MODE_TUNNEL, PROTO_ESP, PolicyDir, Xfrm, XfrmPolicy, XfrmSa, XfrmTmpl};
use charon::Charon;
use config::connection;
use vici::{Message, Vici, ViciError};

pub use config::IpsecSettings;

/// What stops the ipsec backend.
#[derive(Debug, thiserror::Error)]
pub enum IpsecError {
    #[error(
        "the ipsec backend needs strongSwan's charon, found nowhere flannel looks ({}): install strongSwan (Debian: strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins; the weft image carries it)",
        charon::CHARON_CANDIDATES.join(", ")
    )]
    NoCharon,
    #[error(
        "this kernel cannot hold ESP SAs (no esp4: neither built in nor loadable, CONFIG_INET_ESP): the ipsec backend needs kernel ESP and weft has no userspace fallback for it; load it (modprobe esp4) or use the wireguard backend, which has one"
    )]
    NoEsp,
    #[error("cannot start charon ({binary}): {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("charon ({binary}) exited at start ({status}); its log (syslog, or stderr) says why")]
    CharonExited { binary: PathBuf, status: String },
    #[error("charon did not open its VICI socket {socket} within {waited:?}")]
    CharonSilent { socket: PathBuf, waited: Duration },
    #[error(
        "charon refuses the ESPProposal {proposal:?}: {why}; use a strongSwan ESP proposal such as flannel's default aes128gcm16-sha256-prfsha256-ecp256"
    )]
    BadProposal { proposal: String, why: String },
    #[error(transparent)]
    Vici(#[from] ViciError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// What one pass changed, for the logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpsecReport {
    pub policies_set: usize,
    pub policies_removed: usize,
    pub keys_loaded: usize,
    pub keys_removed: usize,
    pub conns_loaded: usize,
    pub conns_unloaded: usize,
    pub rekeyed: usize,
    pub initiated: usize,
    pub charon_restarted: bool,
}

impl IpsecReport {
    pub fn changes(&self) -> usize {
        self.policies_set
            + self.policies_removed
            + self.keys_loaded
            + self.keys_removed
            + self.conns_loaded
            + self.conns_unloaded
            + self.rekeyed
            + self.initiated
            + usize::from(self.charon_restarted)
    }
}

impl std::fmt::Display for IpsecReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} XFRM policies set, {} removed; {} PSKs loaded, {} removed; {} connections loaded, {} unloaded; {} tunnels rekeyed, {} initiated{}",
            self.policies_set,
            self.policies_removed,
            self.keys_loaded,
            self.keys_removed,
            self.conns_loaded,
            self.conns_unloaded,
            self.rekeyed,
            self.initiated,
            if self.charon_restarted {
                "; charon restarted"
            } else {
                ""
            }
        )
    }
}

/// One tunnel as charon and the kernel see it, for `weft status`.
pub use weft_core::status::IpsecTunnelView as TunnelView;

/// The three policies of a tunnel, as flannel installs them.
pub fn policies_of(t: &IpsecTunnel) -> [XfrmPolicy; 3] {
    let local = IpNet::V4(t.local_subnet);
    let remote = IpNet::V4(t.remote_subnet);
    let tmpl = |src: Ipv4Addr, dst: Ipv4Addr| {
        Some(XfrmTmpl {
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            proto: PROTO_ESP,
            mode: MODE_TUNNEL,
            reqid: IPSEC_REQID,
        })
    };
    let policy = |dir, src, dst, t| XfrmPolicy {
        dir,
        src,
        dst,
        priority: 0,
        tmpl: t,
    };
    [
        policy(
            PolicyDir::Out,
            local,
            remote,
            tmpl(t.local_public, t.remote_public),
        ),
        policy(
            PolicyDir::In,
            remote,
            local,
            tmpl(t.remote_public, t.local_public),
        ),
        policy(
            PolicyDir::Fwd,
            remote,
            local,
            tmpl(t.remote_public, t.local_public),
        ),
    ]
}

/// A policy of the kind weft (or flannel before it) installs inside the
/// cluster network: weft's to keep or remove.
fn is_ours(p: &XfrmPolicy, cluster: &[IpNet]) -> bool {
    p.tmpl
        .is_some_and(|t| t.reqid == IPSEC_REQID && t.proto == PROTO_ESP && t.mode == MODE_TUNNEL)
        && cluster.iter().any(|n| n.contains(&p.src))
        && cluster.iter().any(|n| n.contains(&p.dst))
}

/// The id weft gives the PSK of one public IP in charon.
fn key_id(ip: Ipv4Addr) -> String {
    format!("weft-psk-{ip}")
}

/// The ipsec dataplane of one node.
#[derive(Debug)]
pub struct Ipsec {
    charon: Charon,
    xfrm: Xfrm,
    settings: IpsecSettings,
    cluster: Vec<IpNet>,
}

impl Ipsec {
    /// Opens XFRM netlink (in the calling thread's namespace) and starts
    /// (or adopts) charon.
    pub fn start(
        binary: PathBuf,
        socket: PathBuf,
        run_dir: &std::path::Path,
        settings: IpsecSettings,
        cluster: Vec<IpNet>,
    ) -> Result<Ipsec, IpsecError> {
        let xfrm = Xfrm::open()?;
        if !xfrm.esp_supported()? {
            return Err(IpsecError::NoEsp);
        }
        let charon = Charon::start(binary, socket, run_dir)?;
        let ipsec = Ipsec {
            charon,
            xfrm,
            settings,
            cluster,
        };
        ipsec.check_proposal()?;
        Ok(ipsec)
    }

    /// Has charon judge the ESP proposal (see [`config::proposal_check`]).
    fn check_proposal(&self) -> Result<(), IpsecError> {
        let mut vici = self.vici()?;
        match vici.call_ok("load-conn", config::proposal_check(&self.settings)) {
            Ok(_) => {}
            Err(ViciError::Refused { errmsg, .. }) => {
                return Err(IpsecError::BadProposal {
                    proposal: self.settings.esp_proposal.clone(),
                    why: errmsg,
                });
            }
            Err(e) => return Err(e.into()),
        }
        vici.call_ok(
            "unload-conn",
            Message::new().kv("name", config::PROPOSAL_CHECK),
        )?;
        Ok(())
    }

    fn vici(&self) -> Result<Vici, IpsecError> {
        Ok(Vici::connect(self.charon.socket())?)
    }

    /// One pass: policies, then charon (alive, keys, connections), then
    /// the SAs. Policies go first and stay even while charon is down: with
    /// a policy and no SA the kernel drops pod traffic to the peer instead
    /// of sending it in clear.
    pub fn ensure(
        &mut self,
        local_public: Option<Ipv4Addr>,
        tunnels: &[IpsecTunnel],
    ) -> Result<IpsecReport, IpsecError> {
        let mut report = IpsecReport::default();
        self.ensure_policies(tunnels, &mut report)?;
        report.charon_restarted = self.charon.ensure()?;
        let mut vici = self.vici()?;
        self.ensure_keys(&mut vici, local_public, tunnels, &mut report)?;
        let loaded = self.ensure_conns(&mut vici, local_public, tunnels, &mut report)?;
        self.ensure_sas(&mut vici, tunnels, &loaded, &mut report)?;
        Ok(report)
    }

    fn ensure_policies(
        &self,
        tunnels: &[IpsecTunnel],
        report: &mut IpsecReport,
    ) -> Result<(), IpsecError> {
        let want: BTreeMap<_, XfrmPolicy> = tunnels
            .iter()
            .flat_map(policies_of)
            .map(|p| ((p.dir, p.src, p.dst), p))
            .collect();
        let have: BTreeMap<_, XfrmPolicy> = self
            .xfrm
            .policies()?
            .into_iter()
            .filter(|p| is_ours(p, &self.cluster))
            .map(|p| ((p.dir, p.src, p.dst), p))
            .collect();
        for (key, p) in &want {
            if have.get(key) != Some(p) {
                self.xfrm.update_policy(p)?;
                report.policies_set += 1;
            }
        }
        for (dir, src, dst) in have.keys().filter(|k| !want.contains_key(*k)) {
            match self.xfrm.delete_policy(*dir, *src, *dst) {
                Ok(()) => report.policies_removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn ensure_keys(
        &self,
        vici: &mut Vici,
        local_public: Option<Ipv4Addr>,
        tunnels: &[IpsecTunnel],
        report: &mut IpsecReport,
    ) -> Result<(), IpsecError> {
        let want: BTreeSet<Ipv4Addr> = local_public
            .into_iter()
            .chain(tunnels.iter().map(|t| t.remote_public))
            .collect();
        let have: Option<BTreeSet<String>> = match vici.call("get-shared", Message::new()) {
            Ok(m) => Some(m.strs("keys").into_iter().collect()),
            Err(ViciError::Unknown { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        for ip in &want {
            let id = key_id(*ip);
            if have.as_ref().is_some_and(|h| h.contains(&id)) {
                continue;
            }
            vici.call_ok("load-shared", config::shared_key(&id, *ip, &self.settings))?;
            report.keys_loaded += 1;
        }
        let wanted: BTreeSet<String> = want.iter().map(|ip| key_id(*ip)).collect();
        for id in have.iter().flatten() {
            if id.starts_with("weft-psk-") && !wanted.contains(id) {
                vici.call_ok("unload-shared", Message::new().kv("id", id))?;
                report.keys_removed += 1;
            }
        }
        Ok(())
    }

    fn ensure_conns(
        &self,
        vici: &mut Vici,
        local_public: Option<Ipv4Addr>,
        tunnels: &[IpsecTunnel],
        report: &mut IpsecReport,
    ) -> Result<BTreeSet<String>, IpsecError> {
        let have: BTreeSet<String> = vici
            .call("get-conns", Message::new())?
            .strs("conns")
            .into_iter()
            .collect();
        let mut wanted = BTreeSet::new();
        let mut loaded = BTreeSet::new();
        for t in tunnels {
            let name = t.conn_name();
            if !have.contains(&name) {
                vici.call_ok("load-conn", connection(t, &self.settings))?;
                tracing::info!(conn = %name, peer = %t.peer, "loaded the IKE connection");
                report.conns_loaded += 1;
                loaded.insert(name.clone());
            }
            wanted.insert(name);
        }
        for name in have.difference(&wanted) {
            // Only flannel-shaped names from this node's address: an
            // operator's own connections in the same charon stay.
            let ours = parse_conn_name(name)
                .is_some_and(|(local, ..)| local_public.is_none_or(|l| l == local));
            if ours {
                vici.call_ok("unload-conn", Message::new().kv("name", name))?;
                tracing::info!(conn = %name, "unloaded the IKE connection of a departed peer");
                report.conns_unloaded += 1;
            }
        }
        Ok(loaded)
    }

    /// Rekeys the child SA of every tunnel charon counts installed but
    /// whose SAs are missing from the kernel (deleted under us), and
    /// starts every tunnel without any IKE SA: a peer's orderly shutdown
    /// deletes it, and with `close_action` trap but no trap policies
    /// (weft installs the policies) neither end starts it again until the
    /// peer's next charon does; a peer that comes back some other way
    /// (its charon restarted by hand, a flannel node) is met here.
    /// Connections loaded in this pass are starting already.
    fn ensure_sas(
        &self,
        vici: &mut Vici,
        tunnels: &[IpsecTunnel],
        loaded: &BTreeSet<String>,
        report: &mut IpsecReport,
    ) -> Result<(), IpsecError> {
        let kernel = self.xfrm.sas()?;
        let views = list_sas(vici)?;
        for t in tunnels {
            let Some(view) = views.get(&t.conn_name()) else {
                if !loaded.contains(&t.conn_name()) {
                    // timeout -1: answer at once; charon keeps trying
                    // (keyingtries 0).
                    vici.call_ok(
                        "initiate",
                        Message::new()
                            .kv("child", t.child_name())
                            .kv("ike", t.conn_name())
                            .kv("timeout", "-1"),
                    )?;
                    tracing::info!(conn = %t.conn_name(), "the tunnel had no IKE SA; starting it");
                    report.initiated += 1;
                }
                continue;
            };
            if view.child_state != "INSTALLED" {
                continue;
            }
            let (out, inn) = directions(&kernel, t);
            if out == 0 || inn == 0 {
                tracing::warn!(conn = %t.conn_name(), "the tunnel's SAs are missing from the kernel; rekeying it");
                vici.call_ok(
                    "rekey",
                    Message::new()
                        .kv("child", t.child_name())
                        .kv("ike", t.conn_name()),
                )?;
                report.rekeyed += 1;
            }
        }
        Ok(())
    }

    /// Each tunnel as charon and the kernel see it.
    pub fn views(&self, tunnels: &[IpsecTunnel]) -> Result<Vec<TunnelView>, IpsecError> {
        let mut vici = self.vici()?;
        let seen = list_sas(&mut vici)?;
        let kernel = self.xfrm.sas()?;
        Ok(tunnels
            .iter()
            .map(|t| {
                let (out, inn) = directions(&kernel, t);
                let mut v = seen.get(&t.conn_name()).cloned().unwrap_or_default();
                v.conn = t.conn_name();
                v.remote = Some(t.remote_public.to_string());
                v.kernel_sas = out + inn;
                v
            })
            .collect())
    }

    /// Stops the charon the agent owns. The policies stay, as flannel
    /// leaves them: until the next agent, pod traffic to peers is dropped,
    /// never sent in clear, and the next agent adopts them.
    pub fn close(mut self) {
        self.charon.stop();
    }
}

/// ESP SAs with reqid 11 out to and in from the tunnel's peer.
fn directions(kernel: &[XfrmSa], t: &IpsecTunnel) -> (usize, usize) {
    let (l, r) = (IpAddr::V4(t.local_public), IpAddr::V4(t.remote_public));
    let esp = |s: &&XfrmSa| s.proto == PROTO_ESP && s.reqid == IPSEC_REQID;
    let out = kernel
        .iter()
        .filter(esp)
        .filter(|s| s.src == l && s.dst == r)
        .count();
    let inn = kernel
        .iter()
        .filter(esp)
        .filter(|s| s.src == r && s.dst == l)
        .count();
    (out, inn)
}

/// charon's view by connection name. Both ends start their connection,
/// so a pair often holds two IKE SAs, each with a child SA, and traffic
/// takes either: states are the best seen (established, installed), SPIs
/// an installed child's, byte counters the sum over all of them.
fn list_sas(vici: &mut Vici) -> Result<BTreeMap<String, TunnelView>, IpsecError> {
    let (events, _) = vici.call_streamed("list-sas", "list-sa", Message::new())?;
    Ok(views_of(&events))
}

/// [`list_sas`]'s reading of charon's `list-sa` events.
fn views_of(events: &[Message]) -> BTreeMap<String, TunnelView> {
    let mut out: BTreeMap<String, TunnelView> = BTreeMap::new();
    let num = |m: &Message, k: &str| m.str(k).and_then(|b| b.parse::<u64>().ok()).unwrap_or(0);
    for event in events {
        for (name, ike) in event.sections() {
            let v = out.entry(name.to_owned()).or_insert_with(|| TunnelView {
                conn: name.to_owned(),
                ..TunnelView::default()
            });
            let ike_state = ike.str("state").unwrap_or_default();
            if v.ike_state != "ESTABLISHED" {
                v.ike_state = ike_state;
            }
            for (_, child) in ike.sub("child-sas").into_iter().flat_map(|c| c.sections()) {
                let state = child.str("state").unwrap_or_default();
                v.bytes_in += num(child, "bytes-in");
                v.bytes_out += num(child, "bytes-out");
                if v.child_state != "INSTALLED" {
                    v.child_state = state;
                    v.spi_in = child.str("spi-in").unwrap_or_default();
                    v.spi_out = child.str("spi-out").unwrap_or_default();
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
