//! Flags that weftd accepts but whose feature is not built yet.
//!
//! Every flanneld command line must parse (so a DaemonSet written for
//! flanneld is understood), but a flag that asks for something weft cannot
//! do yet must never be silently ignored: an agent that "runs" without the
//! masquerade rules or the Kubernetes store it was asked for breaks a cluster
//! in ways that are hard to trace. Such flags stop weftd with exit status 2
//! and a message naming the missing feature.
//!
//! When a feature lands, delete its rows from [`UNBUILT`]; nothing else.

use crate::flags::{Flags, wrap_into};

/// One flag whose feature is missing.
pub struct Unbuilt {
    /// The flag as written on a command line.
    pub flag: &'static str,
    /// The missing feature and the issue that builds it.
    pub feature: &'static str,
    /// Whether `flags` asks for the feature (from the command line or `FLANNELD_*`).
    pub used: fn(&Flags) -> bool,
    /// A command line that asks for it: the tests check that it trips this row.
    pub example: &'static [&'static str],
}

/// The rows, one per flag. Edit freely: each row is tested through its `example`.
pub const UNBUILT: &[Unbuilt] = &[];

/// `Err` with one line per used row when `flags` asks for anything missing.
pub fn check(flags: &Flags) -> Result<(), String> {
    let lines: Vec<String> = UNBUILT
        .iter()
        .filter(|row| (row.used)(flags))
        .map(|row| {
            format!(
                "{} (or {}) needs {}, which weft does not have yet; remove it to run without",
                row.flag,
                env_var(row.flag),
                row.feature
            )
        })
        .collect();
    if lines.is_empty() {
        Ok(())
    } else {
        Err(lines.join("\n"))
    }
}

/// The `--help` section listing the rows, so operators learn it before a
/// rollout rather than from a crash loop.
pub fn help_section() -> String {
    if UNBUILT.is_empty() {
        return String::new();
    }
    let mut out = String::from("Not built yet:\n");
    wrap_into(
        &mut out,
        "These flags are accepted but stop weftd with exit status 2 until their feature lands:",
        "  ",
    );
    for row in UNBUILT {
        out.push_str(&format!("    {:<22} {}\n", row.flag, row.feature));
    }
    out
}

fn env_var(flag: &str) -> String {
    format!(
        "FLANNELD_{}",
        flag.trim_start_matches('-')
            .to_uppercase()
            .replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{Invocation, parse_from};

    fn flags(args: &[&str]) -> Flags {
        match parse_from(args.iter().copied(), |_| None) {
            Ok(Invocation::Run(flags)) => *flags,
            other => panic!("{args:?} did not parse to flags: {other:?}"),
        }
    }

    #[test]
    fn defaults_use_nothing_unbuilt() {
        assert_eq!(check(&Flags::default()), Ok(()));
    }

    #[test]
    fn every_row_fires_on_its_example_and_names_its_feature() {
        for row in UNBUILT {
            let message = check(&flags(row.example)).expect_err(row.flag);
            assert!(message.contains(row.feature), "{message}");
            assert!(message.contains(row.flag), "{message}");
            assert!(message.contains(&env_var(row.flag)), "{message}");
        }
    }

    #[test]
    fn help_section_lists_every_row() {
        let help = help_section();
        for row in UNBUILT {
            assert!(help.contains(row.flag), "{help}");
        }
    }
}
