//! Masquerade and forward rules, in flannel's exact layout
//! (flannel-compat §6), through nftables or iptables.
//!
//! * [`RulesSpec`] says what the node needs; the renderers turn it into
//!   `iptables-restore` input ([`iptables::render_iptables_restore`]) or an
//!   `nft -f` script ([`nftables::render_nft_script`]) without touching the
//!   kernel.
//! * [`Rules::apply`] converges the kernel to a spec with atomic batches: a
//!   chain or table is replaced inside one commit, so traffic never meets an
//!   empty chain (flannel flushes `FLANNEL-POSTRTG` at startup and cuts pod
//!   egress until it refills it, #2237), and a failed batch leaves the
//!   previous rules in place. Parts already right are not rewritten.
//! * [`Rules::check`] reports any [`Drift`]; the reconciler calls it every
//!   `--iptables-resync` seconds and applies only when something is wrong.
//! * [`Rules::cleanup`] removes what the other backend left behind.
//!
//! Every call spawns `nft` / `iptables-*`, which run in the calling thread's
//! network namespace.

mod drift;
mod error;
mod exec;
pub mod iptables;
pub mod nftables;
mod spec;

pub use drift::{Drift, Problem};
pub use error::RulesError;
pub use exec::Tools;
pub use spec::{FamilyRules, RulesBackend, RulesSpec};

use tokio::sync::OnceCell;

/// The rules manager of one agent: the backend in use, where the tools are,
/// and what the host supports (probed once, on first use).
#[derive(Debug)]
pub struct Rules {
    backend: RulesBackend,
    tools: Tools,
    nft_fully_random: OnceCell<bool>,
    iptables_caps: OnceCell<iptables::Caps>,
    fault: Option<String>,
}

impl Rules {
    /// A manager using the tools found in `PATH`.
    pub fn new(backend: RulesBackend) -> Rules {
        Rules::with_tools(backend, Tools::default())
    }

    /// A manager using explicit tool paths (e.g. `iptables-legacy-restore`).
    pub fn with_tools(backend: RulesBackend, tools: Tools) -> Rules {
        Rules {
            backend,
            tools,
            nft_fully_random: OnceCell::new(),
            iptables_caps: OnceCell::new(),
            fault: None,
        }
    }

    pub fn backend(&self) -> RulesBackend {
        self.backend
    }

    /// Test hook: adds `line` to every batch this manager writes, so tests
    /// can make a commit fail and see that the previous rules survive.
    #[cfg(feature = "test-hooks")]
    pub fn inject_fault_for_tests(&mut self, line: impl Into<String>) {
        self.fault = Some(line.into());
    }

    /// Whether this backend can do fully-random masquerade here. Probed
    /// once; when it cannot, `apply` installs plain masquerade and this warns.
    pub async fn fully_random_supported(&self) -> Result<bool, RulesError> {
        match self.backend {
            RulesBackend::Nftables => {
                let tools = &self.tools;
                let ok = *self
                    .nft_fully_random
                    .get_or_try_init(|| async move {
                        let ok = nftables::probe(tools).await?;
                        if !ok {
                            tracing::warn!(
                                "nft or the kernel refuses `masquerade fully-random`; \
                                 installing plain `masquerade` (source ports are then \
                                 chosen sequentially, which can collide under heavy SNAT)"
                            );
                        }
                        Ok::<bool, RulesError>(ok)
                    })
                    .await?;
                Ok(ok)
            }
            RulesBackend::Iptables => Ok(self.iptables_caps().await?.random_fully),
        }
    }

    async fn iptables_caps(&self) -> Result<iptables::Caps, RulesError> {
        let tools = &self.tools;
        let caps = *self
            .iptables_caps
            .get_or_try_init(|| async move {
                let caps = iptables::probe(tools).await?;
                if !caps.random_fully {
                    tracing::warn!(
                        "iptables is older than 1.6.2 and has no `MASQUERADE --random-fully`; \
                         installing plain MASQUERADE"
                    );
                }
                Ok::<iptables::Caps, RulesError>(caps)
            })
            .await?;
        Ok(caps)
    }

    /// The spec as it can really be installed here.
    async fn effective(&self, spec: &RulesSpec) -> Result<RulesSpec, RulesError> {
        spec.validate()?;
        if !spec.fully_random || !spec.masquerade {
            return Ok(spec.clone());
        }
        Ok(spec.effective(self.fully_random_supported().await?))
    }

    /// Makes the kernel hold exactly `spec`: both families, both chains,
    /// the jumps; removes ours that the spec no longer wants. Idempotent.
    pub async fn apply(&self, spec: &RulesSpec) -> Result<(), RulesError> {
        let spec = self.effective(spec).await?;
        let fault = self.fault.as_deref();
        match self.backend {
            RulesBackend::Nftables => nftables::apply(&self.tools, &spec, fault).await,
            RulesBackend::Iptables => {
                let caps = self.iptables_caps().await?;
                iptables::apply(&self.tools, caps, &spec, fault).await
            }
        }
    }

    /// Reads back what is installed and lists every difference from `spec`.
    pub async fn check(&self, spec: &RulesSpec) -> Result<Drift, RulesError> {
        let spec = self.effective(spec).await?;
        match self.backend {
            RulesBackend::Nftables => nftables::check(&self.tools, &spec).await,
            RulesBackend::Iptables => iptables::check(&self.tools, &spec).await,
        }
    }

    /// Removes everything `target` installed (weft's or flannel's): the nft
    /// tables, or the iptables chains *and* their jumps. At startup call it
    /// with `backend().other()`. Missing tools, tables or chains are not
    /// errors: there is then nothing to remove.
    pub async fn cleanup(&self, target: RulesBackend) -> Result<(), RulesError> {
        let result = match target {
            RulesBackend::Nftables => nftables::cleanup(&self.tools).await,
            RulesBackend::Iptables => match self.iptables_caps().await {
                Ok(caps) => iptables::cleanup(&self.tools, caps).await,
                Err(err) => Err(err),
            },
        };
        match result {
            Err(RulesError::ToolMissing { tool, .. }) => {
                tracing::debug!(%tool, "cleanup skipped: tool not installed, so nothing of it to remove");
                Ok(())
            }
            other => other,
        }
    }
}
