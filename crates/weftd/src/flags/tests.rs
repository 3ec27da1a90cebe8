use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::table::{FLAGS, Kind};
use super::*;

/// Every flag flanneld has (flannel-compat §1), kept outside the code so
/// that a row deleted from the table by mistake fails here.
fn flanneld_flags() -> Vec<&'static str> {
    include_str!("../../tests/fixtures/flanneld-flags.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, FlagError> {
    parse_from(args.iter().copied(), |name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Flags {
    match parse_env(args, env) {
        Ok(Invocation::Run(flags)) => *flags,
        other => panic!("{args:?} {env:?}: expected flags, got {other:?}"),
    }
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
fn every_go_spelling_of_a_value_flag() {
    for args in [
        &["-etcd-prefix", "/x"][..],
        &["-etcd-prefix=/x"],
        &["--etcd-prefix", "/x"],
        &["--etcd-prefix=/x"],
    ] {
        assert_eq!(run(args).etcd_prefix, "/x", "{args:?}");
    }
}

#[test]
fn value_flag_takes_the_next_argument_even_with_a_dash() {
    assert_eq!(run(&["--etcd-prefix", "-iface"]).etcd_prefix, "-iface");
    assert_eq!(run(&["--etcd-prefix=a=b"]).etcd_prefix, "a=b");
    assert_eq!(run(&["--etcd-prefix="]).etcd_prefix, "");
}

#[test]
fn last_value_wins_for_scalar_flags() {
    assert_eq!(run(&["-v=1", "--v", "3"]).v, 3);
}

#[test]
fn bool_spellings() {
    for args in [&["-ip-masq"][..], &["--ip-masq"]] {
        assert!(run(args).ip_masq, "{args:?}");
    }
    for word in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(run(&[&format!("--ip-masq={word}")]).ip_masq, "{word}");
        assert!(
            run(&[&format!("-kube-subnet-mgr={word}")]).kube_subnet_mgr,
            "{word}"
        );
    }
    for word in ["0", "f", "F", "FALSE", "false", "False"] {
        let flags = run(&[&format!("--iptables-forward-rules={word}")]);
        assert!(!flags.iptables_forward_rules, "{word}");
    }
}

#[test]
fn bool_rejects_other_words() {
    for word in ["yes", "on", "tRuE", ""] {
        let message = usage_error(&[&format!("--ip-masq={word}")]);
        assert!(message.starts_with("invalid boolean value"), "{message}");
    }
}

#[test]
fn bool_with_a_separate_value_is_an_error_that_explains() {
    let message = usage_error(&["--ip-masq", "false"]);
    assert!(message.contains("-ip-masq=false"), "{message}");
    // A following flag is fine: `--ip-masq --iface=x` is two flags.
    assert!(run(&["--ip-masq", "--v=2"]).ip_masq);
}

#[test]
fn repeatable_flags_accumulate() {
    let flags = run(&[
        "--iface",
        "eth0",
        "-iface=10.0.0.1",
        "--iface-regex",
        "^10\\.",
        "-iface-regex=eth.*",
    ]);
    assert_eq!(flags.iface, ["eth0", "10.0.0.1"]);
    assert_eq!(flags.iface_regex, ["^10\\.", "eth.*"]);
    assert!(usage_error(&["--iface="]).contains("must not be empty"));
}

#[test]
fn etcd_endpoints_are_comma_split() {
    let flags = run(&["--etcd-endpoints=https://a:2379, https://b:2379,,"]);
    assert_eq!(flags.etcd_endpoints, ["https://a:2379", "https://b:2379"]);
}

#[test]
fn help_in_every_spelling() {
    for arg in ["-h", "--h", "-help", "--help", "-help=1"] {
        assert_eq!(parse_from([arg], no_env), Ok(Invocation::Help), "{arg}");
    }
    assert_eq!(
        parse_from(["--v=2", "-h", "--bogus"], no_env),
        Ok(Invocation::Help)
    );
    // Go parses in order: an earlier error wins.
    usage_error(&["--bogus", "-h"]);
}

#[test]
fn go_usage_errors() {
    assert_eq!(
        usage_error(&["--bogus"]),
        "flag provided but not defined: -bogus"
    );
    assert_eq!(
        usage_error(&["-Iface=x"]),
        "flag provided but not defined: -Iface"
    );
    assert_eq!(
        usage_error(&["--etcd-prefix"]),
        "flag needs an argument: -etcd-prefix"
    );
    for arg in ["---iface", "-=x", "--=x"] {
        assert_eq!(usage_error(&[arg]), format!("bad flag syntax: {arg}"));
    }
    for args in [
        &["eth0"][..],
        &["-"],
        &["--", "x"],
        &["--v=1", "stray", "--ip-masq"],
    ] {
        assert!(
            usage_error(args).starts_with("unexpected argument"),
            "{args:?}"
        );
    }
    assert_eq!(run(&["--v=1", "--"]).v, 1);
}

#[test]
fn ip_flags_are_parsed_here() {
    let flags = run(&[
        "--public-ip=192.0.2.7",
        "--public-ipv6",
        "2001:db8::7",
        "--healthz-ip=::1",
        "--iface-can-reach=198.51.100.1",
    ]);
    assert_eq!(flags.public_ip, Some(Ipv4Addr::new(192, 0, 2, 7)));
    assert_eq!(
        flags.public_ipv6,
        Some("2001:db8::7".parse::<Ipv6Addr>().unwrap())
    );
    assert_eq!(flags.healthz_ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(
        flags.iface_can_reach,
        Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)))
    );
    assert_eq!(run(&["--public-ip="]).public_ip, None);

    let message = usage_error(&["--public-ip=10.0.0.300"]);
    assert_eq!(
        message,
        "invalid value \"10.0.0.300\" for flag -public-ip: not an IP address"
    );
    assert!(usage_error(&["--public-ip=2001:db8::1"]).contains("--public-ipv6"));
    assert!(usage_error(&["--public-ipv6=10.0.0.1"]).contains("--public-ip "));
    usage_error(&["--healthz-ip=localhost"]);
}

#[test]
fn integer_flags() {
    let flags = run(&["--healthz-port=8081", "--iptables-resync", "30", "-v", "4"]);
    assert_eq!(
        (flags.healthz_port, flags.iptables_resync_secs, flags.v),
        (8081, 30, 4)
    );
    assert_eq!(
        run(&["--subnet-lease-renew-margin=-5"]).subnet_lease_renew_margin_minutes,
        -5
    );
    for arg in [
        "--healthz-port=70000",
        "--healthz-port=abc",
        "--iptables-resync=-1",
        "-v=-1",
    ] {
        assert!(usage_error(&[arg]).starts_with("invalid value"), "{arg}");
    }
}

#[test]
fn klog_flags_are_syntax_checked() {
    let flags = run(&["-vmodule=main=2,kube*=4,", "-log_backtrace_at=main.go:120"]);
    assert_eq!(flags.vmodule.as_deref(), Some("main=2,kube*=4,"));
    assert_eq!(flags.log_backtrace_at.as_deref(), Some("main.go:120"));
    for arg in [
        "-vmodule=main",
        "-vmodule==2",
        "-vmodule=main=x",
        "-vmodule=main=-1",
    ] {
        usage_error(&[arg]);
    }
    for arg in [
        "-log_backtrace_at=main:1",
        "-log_backtrace_at=main.go",
        "-log_backtrace_at=a.go:0",
    ] {
        usage_error(&[arg]);
    }
}

#[test]
fn version_is_decided_before_the_environment() {
    assert_eq!(parse_env(&["--version"], &[]), Ok(Invocation::Version));
    assert_eq!(
        parse_env(&["-version"], &[("FLANNELD_HEALTHZ_PORT", "abc")]),
        Ok(Invocation::Version)
    );
    assert_eq!(run(&["--version=false"]), Flags::default());
    assert_eq!(
        run_env(&[], &[("FLANNELD_VERSION", "true")]),
        Flags::default()
    );
}

#[test]
fn env_applies_only_to_flags_not_on_the_command_line() {
    let env = [
        ("FLANNELD_ETCD_PREFIX", "/from-env"),
        ("FLANNELD_SUBNET_FILE", "/env/subnet.env"),
        ("FLANNELD_IP_MASQ", "1"),
    ];
    let flags = run_env(&["--etcd-prefix=/from-cli"], &env);
    assert_eq!(flags.etcd_prefix, "/from-cli");
    assert_eq!(flags.subnet_file, PathBuf::from("/env/subnet.env"));
    assert!(flags.ip_masq);
    // Explicitly empty or false on the command line still counts as set.
    let flags = run_env(
        &["--ip-masq=false", "--etcd-username="],
        &[
            ("FLANNELD_IP_MASQ", "true"),
            ("FLANNELD_ETCD_USERNAME", "root"),
        ],
    );
    assert!(!flags.ip_masq);
    assert_eq!(flags.etcd_username, None);
}

#[test]
fn empty_env_is_ignored() {
    let flags = run_env(
        &[],
        &[("FLANNELD_ETCD_PREFIX", ""), ("FLANNELD_HEALTHZ_PORT", "")],
    );
    assert_eq!(flags, Flags::default());
}

#[test]
fn env_for_repeatable_flags_is_one_element_but_endpoints_split() {
    let flags = run_env(
        &[],
        &[
            ("FLANNELD_IFACE", "eth0,eth1"),
            ("FLANNELD_IFACE_REGEX", "^10\\..*"),
            ("FLANNELD_ETCD_ENDPOINTS", "https://a:2379,https://b:2379"),
        ],
    );
    assert_eq!(flags.iface, ["eth0,eth1"]);
    assert_eq!(flags.iface_regex, ["^10\\..*"]);
    assert_eq!(flags.etcd_endpoints, ["https://a:2379", "https://b:2379"]);
    // On the command line, the flag replaces the variable entirely.
    assert_eq!(
        run_env(&["--iface=eth2"], &[("FLANNELD_IFACE", "eth0")]).iface,
        ["eth2"]
    );
}

#[test]
fn env_names_cover_klog_flags() {
    let flags = run_env(
        &[],
        &[
            ("FLANNELD_V", "5"),
            ("FLANNELD_VMODULE", "x=1"),
            ("FLANNELD_LOG_BACKTRACE_AT", "a.go:1"),
        ],
    );
    assert_eq!(flags.v, 5);
    assert_eq!(flags.vmodule.as_deref(), Some("x=1"));
    assert_eq!(flags.log_backtrace_at.as_deref(), Some("a.go:1"));
}

#[test]
fn env_is_asked_for_every_flag_but_version() {
    let asked = RefCell::new(Vec::new());
    let parsed = parse_from(Vec::<String>::new(), |name| {
        asked.borrow_mut().push(name.to_owned());
        None
    });
    assert!(matches!(parsed, Ok(Invocation::Run(_))));
    let mut expected: Vec<String> = [flanneld_flags().as_slice(), WEFT_FLAGS]
        .concat()
        .iter()
        .filter(|name| **name != "version")
        .map(|name| format!("FLANNELD_{}", name.to_uppercase().replace('-', "_")))
        .collect();
    let mut asked = asked.into_inner();
    expected.sort_unstable();
    asked.sort_unstable();
    assert_eq!(asked, expected);
    assert!(asked.iter().any(|name| name == "FLANNELD_LOG_BACKTRACE_AT"));
}

#[test]
fn invalid_env_is_an_error_naming_every_bad_variable() {
    let err = parse_env(
        &[],
        &[
            ("FLANNELD_HEALTHZ_PORT", "abc"),
            ("FLANNELD_IP_MASQ", "yes"),
        ],
    )
    .expect_err("two bad variables");
    assert_eq!(err.exit_code(), 1);
    let message = err.to_string();
    assert!(
        message.contains("\"abc\" in FLANNELD_HEALTHZ_PORT (flag -healthz-port)"),
        "{message}"
    );
    assert!(message.contains("FLANNELD_IP_MASQ"), "{message}");
    assert_eq!(message.lines().count(), 2);
    // The same variable is not read when the flag is on the command line.
    assert!(parse_env(&["--healthz-port=0"], &[("FLANNELD_HEALTHZ_PORT", "abc")]).is_ok());
}

#[test]
fn renew_margin_and_resync_validation() {
    for margin in ["0", "1440", "-1"] {
        let flags = run(&[&format!("--subnet-lease-renew-margin={margin}")]);
        assert_eq!(
            flags.validate(),
            Err(RENEW_MARGIN_MESSAGE.to_owned()),
            "{margin}"
        );
    }
    for margin in ["1", "1439"] {
        assert_eq!(
            run(&[&format!("--subnet-lease-renew-margin={margin}")]).validate(),
            Ok(())
        );
    }
    assert!(run(&["--iptables-resync=0"]).validate().is_err());
    assert_eq!(Flags::default().validate(), Ok(()));
}

#[test]
fn password_never_reaches_debug_output() {
    let flags = run(&["--etcd-password=hunter2"]);
    assert_eq!(
        flags.etcd_password.as_ref().map(Secret::expose),
        Some("hunter2")
    );
    let logged = format!("{flags:?} {flags:#?}");
    assert!(!logged.contains("hunter2"), "{logged}");
    assert!(logged.contains("<redacted>"));
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

fn with_file(args: &[&str], env: &[(&str, &str)], file: &str) -> Result<Invocation, FlagError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let file = file.to_owned();
    parse_with_files(
        args.iter().copied(),
        move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        move |_| Ok(file.clone()),
    )
}

fn run_flags(r: Result<Invocation, FlagError>) -> Flags {
    match r {
        Ok(Invocation::Run(f)) => *f,
        other => panic!("expected flags, got {other:?}"),
    }
}

#[test]
fn config_file_has_the_lowest_precedence() {
    let file = "etcd-prefix: /from/file\nip-masq: true\nhealthz-port: 8081\niface: [eth1, eth2]\netcd-endpoints: [http://a:2379, http://b:2379]\n";
    let f = run_flags(with_file(
        &["--config=/c.yaml", "--etcd-prefix=/from/cli"],
        &[("FLANNELD_HEALTHZ_PORT", "9090")],
        file,
    ));
    assert_eq!(f.etcd_prefix, "/from/cli", "command line beats the file");
    assert_eq!(f.healthz_port, 9090, "FLANNELD_* beats the file");
    assert!(f.ip_masq, "the file fills what nothing else set");
    assert_eq!(f.iface, vec!["eth1".to_owned(), "eth2".to_owned()]);
    assert_eq!(
        f.etcd_endpoints,
        vec!["http://a:2379".to_owned(), "http://b:2379".to_owned()]
    );
}

#[test]
fn config_file_unknown_keys_and_bad_values_are_errors() {
    let err = with_file(
        &["--config", "/c.yaml"],
        &[],
        "ip-masqq: true\nhealthz-port: lots\n",
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let text = err.to_string();
    assert!(text.contains("unknown key \"ip-masqq\""), "{text}");
    assert!(
        text.contains("invalid value \"lots\" for healthz-port"),
        "{text}"
    );
    let err = with_file(&["--config", "/c.yaml"], &[], "- a\n- b\n").unwrap_err();
    assert!(err.to_string().contains("expected a mapping"), "{err}");
}

#[test]
fn config_file_can_come_from_the_environment() {
    let f = run_flags(with_file(
        &[],
        &[("FLANNELD_CONFIG", "/etc/weft.yaml")],
        "subnet-file: /x/subnet.env\n",
    ));
    assert_eq!(f.subnet_file, PathBuf::from("/x/subnet.env"));
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(
        run_flags(parse_from(["--log-format=json"], |_| None)).log_format,
        "json"
    );
    assert!(parse_from(["--log-format=xml"], |_| None).is_err());
}
