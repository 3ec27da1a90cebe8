//! The agent's ipsec backend: charon started before the lease (a node
//! that cannot run IKE must not hold a subnet), then every pass hands the
//! planner's tunnels to the dataplane's reconciler, and shutdown stops the
//! charon the agent owns.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use weft_core::netconf::{IpsecOptions, NetConfig};
use weft_core::plan::{Desired, IpsecTunnel};
use weft_dataplane::ipsec::charon::{VICI_SOCKET, find_charon};
use weft_dataplane::ipsec::{Ipsec, IpsecSettings, TunnelView};

/// Where weft keeps its note of the charon it started (per node: `/run`).
const RUN_DIR: &str = "/run/flannel";

/// Tunnel states as last read, shared with the status API.
pub type TunnelViews = Arc<Mutex<Vec<TunnelView>>>;

pub struct IpsecState {
    ipsec: Option<Ipsec>,
    local_public: Option<Ipv4Addr>,
    views: TunnelViews,
}

/// Runs blocking ipsec work without stalling other tasks on the worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl IpsecState {
    /// Checks the kernel, finds and starts charon. Errors name what is
    /// missing; the agent stops before leasing.
    pub fn prepare(
        cfg: &NetConfig,
        opts: &IpsecOptions,
        local_public: Option<Ipv4Addr>,
    ) -> Result<IpsecState> {
        let binary = find_charon()?;
        let settings = IpsecSettings {
            psk: opts.psk.expose().to_owned(),
            esp_proposal: opts.esp_proposal.clone(),
            udp_encap: opts.udp_encap,
        };
        tracing::info!(
            udp_encap = opts.udp_encap,
            esp_proposal = %opts.esp_proposal,
            charon = %binary.display(),
            "IPsec config"
        );
        let cluster = cfg.pools().map(|p| p.network).collect();
        let ipsec = blocking(|| {
            Ipsec::start(
                binary,
                PathBuf::from(VICI_SOCKET),
                Path::new(RUN_DIR),
                settings,
                cluster,
            )
        })
        .context("cannot start the ipsec backend")?;
        Ok(IpsecState {
            ipsec: Some(ipsec),
            local_public,
            views: TunnelViews::default(),
        })
    }

    /// Makes policies, keys and connections equal to the plan's tunnels,
    /// then reads their state for `weft status`.
    pub fn ensure(&mut self, desired: &Desired) -> Result<()> {
        let Some(ipsec) = &mut self.ipsec else {
            return Ok(());
        };
        let local = self
            .local_public
            .or_else(|| desired.ipsec.first().map(|t| t.local_public));
        let report = blocking(|| ipsec.ensure(local, &desired.ipsec))
            .context("cannot program the ipsec tunnels")?;
        if report.changes() > 0 {
            tracing::info!("ipsec: {report}");
        }
        self.refresh(&desired.ipsec);
        Ok(())
    }

    /// Re-reads the tunnels' states.
    pub fn refresh(&self, tunnels: &[IpsecTunnel]) {
        let Some(ipsec) = &self.ipsec else {
            return;
        };
        match blocking(|| ipsec.views(tunnels)) {
            Ok(v) => *self.views.lock().unwrap_or_else(|p| p.into_inner()) = v,
            Err(e) => tracing::debug!("cannot read the ipsec tunnels' state: {e}"),
        }
    }

    pub fn views(&self) -> TunnelViews {
        Arc::clone(&self.views)
    }

    /// Stops the charon the agent owns; policies stay (see
    /// [`Ipsec::close`]).
    pub fn close(mut self) {
        if let Some(ipsec) = self.ipsec.take() {
            blocking(|| ipsec.close());
        }
    }
}
