//! Go's command-line syntax, as flanneld's `flag` package parses it.

use std::net::Ipv6Addr;

use super::*;

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

/// `--wireguard-key-rotation` takes Go's duration syntax, as the
/// `FLANNELD_WIREGUARD_KEY_ROTATION` variable does; 0 is off.
#[test]
fn wireguard_key_rotation_takes_a_go_duration() {
    use std::time::Duration;
    assert_eq!(run(&[]).wireguard_key_rotation, None, "off by default");
    for (arg, want) in [
        ("720h", Some(Duration::from_secs(720 * 3600))),
        ("1h30m", Some(Duration::from_secs(5400))),
        ("1.5h", Some(Duration::from_secs(5400))),
        ("5s", Some(Duration::from_secs(5))),
        ("0", None),
    ] {
        let flags = run(&[&format!("--wireguard-key-rotation={arg}")]);
        assert_eq!(flags.wireguard_key_rotation, want, "{arg}");
    }
    let env = run_env(&[], &[("FLANNELD_WIREGUARD_KEY_ROTATION", "24h")]);
    assert_eq!(
        env.wireguard_key_rotation,
        Some(Duration::from_secs(24 * 3600))
    );
    for bad in ["5", "-5s", "1d", "h", "500ms", "1h-", "1..5h"] {
        let e = parse_env(&[&format!("--wireguard-key-rotation={bad}")], &[]).err();
        assert!(e.is_some(), "{bad} was accepted");
    }
}
