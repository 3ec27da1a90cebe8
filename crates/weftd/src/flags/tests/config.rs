//! The `--config` file, the lowest precedence, and the checks made once
//! everything is parsed.

use super::*;

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
fn config_file_has_the_lowest_precedence() {
    let file = "etcd-prefix: /from/file\nip-masq: true\nhealthz-port: 8081\niface: [eth1, eth2]\netcd-endpoints: [http://a:2379, http://b:2379]\n";
    let f = run_flags(
        with_file(
            &["--config=/c.yaml", "--etcd-prefix=/from/cli"],
            &[("FLANNELD_HEALTHZ_PORT", "9090")],
            file,
        ),
        file,
    );
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
    let f = run_flags(
        with_file(
            &[],
            &[("FLANNELD_CONFIG", "/etc/weft.yaml")],
            "subnet-file: /x/subnet.env\n",
        ),
        "FLANNELD_CONFIG",
    );
    assert_eq!(f.subnet_file, PathBuf::from("/x/subnet.env"));
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(
        run_flags(
            parse_from(["--log-format=json"], no_env),
            "--log-format=json"
        )
        .log_format,
        "json"
    );
    assert!(parse_from(["--log-format=xml"], no_env).is_err());
}
