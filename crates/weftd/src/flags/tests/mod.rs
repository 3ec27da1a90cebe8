//! The flag parser against flanneld's: the table, Go's command-line
//! syntax (`syntax.rs`), `FLANNELD_*` (`env.rs`) and the `--config` file
//! and checks after parsing (`config.rs`). The parsing helpers are here.

mod config;
mod env;
mod syntax;

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::table::{FLAGS, Kind};
use super::*;

/// Every flag flanneld has (flannel-compat §1), kept outside the code so
/// that a row deleted from the table by mistake fails here.
fn flanneld_flags() -> Vec<&'static str> {
    include_str!("../../../tests/fixtures/flanneld-flags.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// `env` as the environment lookup the parser takes.
fn lookup<'a>(env: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
    |name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, FlagError> {
    parse_from(args.iter().copied(), lookup(env))
}

/// `args` and `env` with `file` as the content of any `--config` file.
fn with_file(args: &[&str], env: &[(&str, &str)], file: &str) -> Result<Invocation, FlagError> {
    parse_with_files(args.iter().copied(), lookup(env), |_| Ok(file.to_owned()))
}

/// The flags of a parse that must yield them; `what` was parsed.
fn run_flags(parsed: Result<Invocation, FlagError>, what: impl Debug) -> Flags {
    match parsed {
        Ok(Invocation::Run(flags)) => *flags,
        other => panic!("{what:?}: expected flags, got {other:?}"),
    }
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Flags {
    run_flags(parse_env(args, env), (args, env))
}

fn run(args: &[&str]) -> Flags {
    run_env(args, &[])
}

fn usage_error(args: &[&str]) -> String {
    match parse_from(args.iter().copied(), no_env) {
        Err(e @ FlagError::Usage(_)) => {
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        }
        other => panic!("{args:?}: expected a usage error, got {other:?}"),
    }
}

#[test]
fn no_arguments_give_flanneld_defaults() {
    assert_eq!(run(&[]), Flags::default());
    let defaults = Flags::default();
    assert_eq!(
        defaults.etcd_endpoints,
        ["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
    );
    assert_eq!(
        defaults.subnet_file,
        PathBuf::from("/run/flannel/subnet.env")
    );
    assert_eq!(defaults.healthz_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert!(defaults.iptables_forward_rules && defaults.set_node_network_unavailable);
}

/// Flags weft adds to flanneld's set.
const WEFT_FLAGS: &[&str] = &[
    "local-store",
    "subnet-lease-ttl",
    "status-socket",
    "config",
    "log-format",
    "wireguard-path",
    "wireguard-key-rotation",
    "cni-conf-file",
];

#[test]
fn table_has_exactly_flanneld_flags_plus_weft_extensions() {
    let mut table: Vec<&str> = FLAGS.iter().map(|spec| spec.name).collect();
    let mut expected = [flanneld_flags().as_slice(), WEFT_FLAGS].concat();
    table.sort_unstable();
    expected.sort_unstable();
    assert_eq!(table, expected);
}

#[test]
fn table_defaults_are_flags_defaults() {
    // `--name=<default as --help shows it>` must leave Flags at its default.
    for spec in FLAGS
        .iter()
        .filter(|spec| !matches!(spec.kind, Kind::Repeated(_)))
    {
        let arg = format!("--{}={}", spec.name, spec.default);
        assert_eq!(run(&[&arg]), Flags::default(), "{arg}");
    }
}

#[test]
fn help_lists_every_flag_with_default_and_env() {
    let help = help_text("");
    for name in flanneld_flags() {
        assert!(help.contains(&format!("  --{name}")), "--{name} missing");
    }
    for spec in FLAGS {
        if let Some(var) = spec.env_var() {
            assert!(help.contains(&format!("[env: {var}]")), "{var} missing");
        }
    }
    assert!(help.contains("[default: http://127.0.0.1:4001,http://127.0.0.1:2379]"));
    assert!(help.contains("FLANNELD_<NAME>"));
    assert!(help.contains("Unlike flanneld"));
    assert!(
        help.lines()
            .all(|line| line.chars().count() <= 80 || !line.contains(' '))
    );
}
