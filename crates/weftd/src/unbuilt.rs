//! Flags and backends that weftd accepts but whose feature is not built yet.
//!
//! Every flanneld command line must parse (so a DaemonSet written for
//! flanneld is understood), and every flannel net-conf.json must parse (so
//! `weft config validate` judges it), but asking for something weft cannot
//! do yet must never be silently ignored: an agent that "runs" without the
//! masquerade rules or the encryption it was asked for breaks a cluster in
//! ways that are hard to trace. Such requests stop weftd with exit status 2
//! and a message naming the missing feature: a flag right after parsing, a
//! backend as soon as the net-conf is read, before a subnet is leased (a
//! node that cannot serve a subnet must not hold one).
//!
//! When a feature lands, delete its rows from [`UNBUILT`] or
//! [`UNBUILT_BACKENDS`]; nothing else.

use weft_core::netconf::NetConfig;

use crate::flags::{Flags, wrap_into};

/// A requested feature that is not built yet: weftd exits with status 2
/// rather than run half-configured.
#[derive(Debug, thiserror::Error)]
#[error("{what} is not built yet: weftd cannot run with this configuration{}", instead_clause(.instead))]
pub struct NotBuilt {
    /// What was asked for ("the ipsec backend").
    pub what: String,
    /// What to do meanwhile, if there is something.
    pub instead: Option<&'static str>,
}

fn instead_clause(instead: &Option<&'static str>) -> String {
    instead.map_or_else(String::new, |s| format!("; {s}"))
}

/// One flag whose feature is missing.
pub struct Unbuilt {
    /// The flag as written on a command line.
    pub flag: &'static str,
    /// The missing feature, as users know it.
    pub feature: &'static str,
    /// Whether `flags` asks for the feature (from the command line or `FLANNELD_*`).
    pub used: fn(&Flags) -> bool,
    /// A command line that asks for it: the tests check that it trips this row.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests only"))]
    pub example: &'static [&'static str],
}

/// The flag rows. Edit freely: each row is tested through its `example`.
/// Empty: every flag of flanneld and weft works.
pub const UNBUILT: &[Unbuilt] = &[];

/// One net-conf.json backend whose implementation is missing.
pub struct UnbuiltBackend {
    /// `Backend.Type` as [`weft_core::netconf::BackendConfig::config_type`]
    /// spells it.
    pub backend: &'static str,
    /// The missing feature, as users know it.
    pub feature: &'static str,
    /// What to use meanwhile.
    pub instead: &'static str,
    /// A net-conf.json selecting it: the tests check that it trips this row.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests only"))]
    pub example: &'static str,
}

/// The backend rows. Edit freely: each row is tested through its `example`.
/// Empty: every backend of flannel's that weft documents runs (ipsec since
/// issue 17).
pub const UNBUILT_BACKENDS: &[UnbuiltBackend] = &[];

/// `Err` with one line per used row when `flags` asks for anything missing.
pub fn check(flags: &Flags) -> Result<(), String> {
    check_rows(UNBUILT, flags)
}

fn check_rows(rows: &[Unbuilt], flags: &Flags) -> Result<(), String> {
    let lines: Vec<String> = rows
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

/// `Err` when the net-conf selects a backend weft cannot run. The agent
/// calls it as soon as the net-conf is read, before it leases a subnet.
pub fn check_backend(cfg: &NetConfig) -> Result<(), NotBuilt> {
    check_backend_rows(UNBUILT_BACKENDS, cfg.backend.config_type())
}

fn check_backend_rows(rows: &[UnbuiltBackend], config_type: &str) -> Result<(), NotBuilt> {
    match rows.iter().find(|row| row.backend == config_type) {
        Some(row) => Err(NotBuilt {
            what: row.feature.to_owned(),
            instead: Some(row.instead),
        }),
        None => Ok(()),
    }
}

const FLAGS_INTRO: &str =
    "These flags are accepted but stop weftd with exit status 2 until their feature lands:";
const NO_FLAGS: &str = "Every flag above works.";
const BACKENDS_INTRO: &str = "These net-conf.json backends are accepted by the parser but stop \
weftd with exit status 2 as soon as it reads the net-conf, before it leases a subnet:";

/// The `--help` section listing the rows, so operators learn it before a
/// rollout rather than from a crash loop.
pub fn help_section() -> String {
    help_section_for(UNBUILT, UNBUILT_BACKENDS)
}

fn help_section_for(flags: &[Unbuilt], backends: &[UnbuiltBackend]) -> String {
    let mut out = String::from("Not built yet:\n");
    if flags.is_empty() {
        wrap_into(&mut out, NO_FLAGS, "  ");
    } else {
        wrap_into(&mut out, FLAGS_INTRO, "  ");
        for row in flags {
            out.push_str(&format!("    {:<22} {}\n", row.flag, row.feature));
        }
    }
    if !backends.is_empty() {
        out.push('\n');
        wrap_into(&mut out, BACKENDS_INTRO, "  ");
        for row in backends {
            out.push_str(&format!("    {}\n", row.backend));
            wrap_into(
                &mut out,
                &format!("{}; {}.", row.feature, row.instead),
                "        ",
            );
        }
    }
    out
}

/// The same section in Markdown, for docs/configuration.md (written by
/// the test that keeps that file true).
#[cfg(test)]
pub fn reference_section() -> String {
    reference_section_for(UNBUILT, UNBUILT_BACKENDS)
}

#[cfg(test)]
fn reference_section_for(flags: &[Unbuilt], backends: &[UnbuiltBackend]) -> String {
    let mut out = String::from("## Not built yet\n\n");
    if flags.is_empty() {
        out.push_str(NO_FLAGS);
        out.push_str("\n\n");
    } else {
        out.push_str(&format!(
            "{FLAGS_INTRO}\n\n| flag | feature |\n| --- | --- |\n"
        ));
        for row in flags {
            out.push_str(&format!("| `{}` | {} |\n", row.flag, row.feature));
        }
        out.push('\n');
    }
    if !backends.is_empty() {
        out.push_str(&format!(
            "{BACKENDS_INTRO}\n\n| `Backend.Type` | feature | instead |\n| --- | --- | --- |\n"
        ));
        for row in backends {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                row.backend,
                row.feature,
                row.instead.replace('|', "\\|")
            ));
        }
        out.push('\n');
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

    /// A row as a real one would be written, so the row machinery is
    /// tested even while [`UNBUILT`] is empty.
    const SAMPLE: Unbuilt = Unbuilt {
        flag: "--ip-blackhole-route",
        feature: "blackhole routes",
        used: |f| f.ip_blackhole_route,
        example: &["--ip-blackhole-route"],
    };

    fn flag_rows() -> Vec<&'static Unbuilt> {
        UNBUILT.iter().chain([&SAMPLE]).collect()
    }

    #[test]
    fn defaults_use_nothing_unbuilt() {
        assert_eq!(check(&Flags::default()), Ok(()));
        for row in flag_rows() {
            let rows = std::slice::from_ref(row);
            assert_eq!(check_rows(rows, &Flags::default()), Ok(()), "{}", row.flag);
        }
    }

    #[test]
    fn every_row_fires_on_its_example_and_names_its_feature() {
        for row in flag_rows() {
            let used = flags(row.example);
            let message = check_rows(std::slice::from_ref(row), &used).expect_err(row.flag);
            assert!(message.contains(row.feature), "{message}");
            assert!(message.contains(row.flag), "{message}");
            assert!(message.contains(&env_var(row.flag)), "{message}");
        }
        // The real table is the one `check` reads.
        for row in UNBUILT {
            assert!(check(&flags(row.example)).is_err(), "{}", row.flag);
        }
    }

    #[test]
    fn help_section_lists_every_row_or_says_every_flag_works() {
        let help = help_section();
        for row in UNBUILT {
            assert!(help.contains(row.flag), "{help}");
        }
        assert_eq!(help.contains(NO_FLAGS), UNBUILT.is_empty(), "{help}");
        assert_eq!(help.contains(FLAGS_INTRO), !UNBUILT.is_empty(), "{help}");
        let with_sample = help_section_for(&[SAMPLE], &[]);
        assert!(with_sample.contains(SAMPLE.flag), "{with_sample}");
        assert!(!with_sample.contains(NO_FLAGS), "{with_sample}");
        let docs = reference_section_for(&[SAMPLE], &[]);
        assert!(docs.contains(&format!("`{}`", SAMPLE.flag)), "{docs}");
    }

    /// A backend row as a real one would be written, so the machinery is
    /// tested while [`UNBUILT_BACKENDS`] is empty.
    const SAMPLE_BACKEND: UnbuiltBackend = UnbuiltBackend {
        backend: "none",
        feature: "the none backend",
        instead: "use host-gw",
        example: r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "none"}}"#,
    };

    #[test]
    fn every_backend_row_fires_on_its_example_and_says_what_to_use() {
        for row in UNBUILT_BACKENDS.iter().chain([&SAMPLE_BACKEND]) {
            let rows = std::slice::from_ref(row);
            let cfg = weft_core::netconf::parse(row.example)
                .unwrap_or_else(|e| panic!("{}: example does not parse: {e}", row.backend));
            let message = check_backend_rows(rows, cfg.backend.config_type())
                .expect_err(row.backend)
                .to_string();
            assert!(message.contains(row.feature), "{message}");
            assert!(message.contains("not built yet"), "{message}");
            assert!(message.contains(row.instead), "{message}");
            let help = help_section_for(&[], rows);
            assert!(help.contains(&format!("    {}\n", row.backend)), "{help}");
            assert!(reference_section_for(&[], rows).contains(&format!("`{}`", row.backend)));
        }
        for row in UNBUILT_BACKENDS {
            let cfg = weft_core::netconf::parse(row.example).unwrap();
            assert!(check_backend(&cfg).is_err(), "{}", row.backend);
        }
    }

    #[test]
    fn built_backends_pass() {
        for json in [
            r#"{"Network": "10.244.0.0/16"}"#,
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}"#,
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}"#,
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "ipip"}}"#,
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "none"}}"#,
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "ipsec", "PSK": "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}}"#,
        ] {
            let cfg = weft_core::netconf::parse(json).unwrap();
            assert!(check_backend(&cfg).is_ok(), "{json}");
        }
    }
}
