//! What `check` found: the difference between the spec and what the kernel
//! holds. The reconciler re-applies only when this is non-empty, so an
//! unchanged node never rewrites its rules (flannel #1913/#1906 rewrote them
//! every resync because its existence test misjudged).

use std::fmt;

/// Differences between the desired rules and the installed ones; empty when
/// the kernel matches the spec exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drift {
    pub problems: Vec<Problem>,
}

impl Drift {
    /// True when nothing needs to be re-applied.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One difference. `place` names the family, table and chain, e.g.
/// `IPv4 nat FLANNEL-POSTRTG` or `nft ip flannel-ipv4 postrtg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A chain (or, for nftables, a whole table) the spec needs is absent.
    MissingChain { place: String },
    /// A chain or table of ours the spec does not want is present.
    Unexpected { place: String },
    /// An nftables base chain with the wrong type, hook, priority or policy.
    ChainDefinition {
        place: String,
        expected: String,
        found: String,
    },
    /// The chain's rules are not exactly the expected ones in order:
    /// something is missing, extra, or misordered.
    Rules {
        place: String,
        expected: Vec<String>,
        found: Vec<String>,
    },
    /// The jump from POSTROUTING/FORWARD into our chain is absent.
    MissingJump { place: String, rule: String },
    /// A rule carrying flannel's comment in a built-in chain that is not the
    /// one jump: a duplicate jump or a leftover of an older flannel.
    StaleRule { place: String, rule: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingChain { place } => write!(f, "{place}: missing"),
            Problem::Unexpected { place } => write!(f, "{place}: present but not wanted"),
            Problem::ChainDefinition {
                place,
                expected,
                found,
            } => write!(f, "{place}: defined as `{found}`, expected `{expected}`"),
            Problem::Rules {
                place,
                expected,
                found,
            } => {
                let missing = expected.iter().filter(|r| !found.contains(r)).count();
                let extra = found.iter().filter(|r| !expected.contains(r)).count();
                if missing == 0 && extra == 0 {
                    write!(f, "{place}: rules out of order or duplicated")
                } else {
                    write!(f, "{place}: {missing} rule(s) missing, {extra} unexpected")
                }
            }
            Problem::MissingJump { place, rule } => write!(f, "{place}: jump `{rule}` missing"),
            Problem::StaleRule { place, rule } => write!(f, "{place}: stale rule `{rule}`"),
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            return f.write_str("rules match the spec");
        }
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
