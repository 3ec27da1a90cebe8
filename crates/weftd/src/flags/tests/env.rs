//! `FLANNELD_*`: every flag's variable, below the command line.

use std::cell::RefCell;

use super::*;

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
