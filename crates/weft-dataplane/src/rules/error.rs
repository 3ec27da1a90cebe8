//! Errors of the rules layer. Each names the command, what it was working
//! on (family and table) and the tool's own stderr, and says what to check:
//! the operator reading the log has no other context.

/// Why masquerade or forward rules could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("invalid rules spec: {0}")]
    InvalidSpec(String),

    #[error("{tool} not found: {remedy}")]
    ToolMissing { tool: String, remedy: &'static str },

    #[error("could not run `{command}` for {target}: {source}")]
    Spawn {
        command: String,
        target: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` did not finish within {secs} s for {target}; {hint}")]
    Timeout {
        command: String,
        target: String,
        secs: u64,
        hint: &'static str,
    },

    #[error("`{command}` failed for {target} ({status}): {stderr}; {hint}")]
    Failed {
        command: String,
        target: String,
        status: String,
        stderr: String,
        hint: &'static str,
    },

    #[error("could not understand the output of `{command}` for {target}: {detail}")]
    Parse {
        command: String,
        target: String,
        detail: String,
    },
}

/// The tool families, for remedies and hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolKind {
    Nft,
    Iptables,
}

impl ToolKind {
    pub(crate) fn remedy(self) -> &'static str {
        match self {
            ToolKind::Nft => "install nftables (the `nft` binary) or set EnableNFTables=false",
            ToolKind::Iptables => {
                "install iptables (iptables-save and iptables-restore, also for IPv6) \
                 or set EnableNFTables=true"
            }
        }
    }

    pub(crate) fn hint(self) -> &'static str {
        match self {
            ToolKind::Nft => {
                "check that the kernel has nf_tables with NAT (nft_chain_nat, nft_masq) \
                 and that weft runs with CAP_NET_ADMIN"
            }
            ToolKind::Iptables => {
                "check that this iptables variant (nft or legacy) is the one kube-proxy uses, \
                 that /run/xtables.lock is shared with the host, that the kernel supports this \
                 family, and that weft runs with CAP_NET_ADMIN"
            }
        }
    }
}
