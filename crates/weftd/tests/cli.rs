#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `weftd` binary: exit codes, stdout/stderr, and `FLANNELD_*`
//! precedence through the process environment.

use std::process::{Command, Output};

/// Every flag flanneld has (flannel-compat §1), kept outside the code so
/// that a row deleted from the flag table by mistake fails.
fn flanneld_flags() -> Vec<&'static str> {
    include_str!("fixtures/flanneld-flags.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

const RENEW_MARGIN_MESSAGE: &str =
    "Invalid subnet-lease-renew-margin option, out of acceptable range";

/// Runs weftd with exactly `env` as its environment.
fn weftd(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weftd"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("weftd runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails unless weftd exited with `code` and its stderr says `text`; that
/// stderr.
#[track_caller]
fn exits_saying(output: &Output, code: i32, text: &str) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{err}");
    assert!(err.contains(text), "{err}");
    err
}

#[test]
fn help_lists_every_flanneld_flag_and_exits_0() {
    for spelling in ["--help", "-help", "-h"] {
        let output = weftd(&[spelling], &[]);
        assert_eq!(output.status.code(), Some(0), "{spelling}");
        let help = stdout(&output);
        for name in flanneld_flags() {
            assert!(
                help.contains(&format!("--{name}")),
                "{spelling}: --{name} missing"
            );
        }
        assert!(help.contains("FLANNELD_"), "{help}");
    }
}

#[test]
fn version_prints_to_stdout_and_exits_0() {
    for spelling in ["--version", "-version"] {
        let output = weftd(&[spelling], &[("FLANNELD_HEALTHZ_PORT", "abc")]);
        assert_eq!(output.status.code(), Some(0), "{spelling}");
        assert_eq!(
            stdout(&output),
            format!("weftd {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = weftd(&["--no-such-flag"], &[]);
    exits_saying(&output, 2, "flag provided but not defined: -no-such-flag");
    assert!(stdout(&output).is_empty());
}

#[test]
fn stray_bool_value_is_a_usage_error() {
    let output = weftd(&["--ip-masq", "false"], &[]);
    exits_saying(&output, 2, "-ip-masq=false");
}

#[test]
fn renew_margin_out_of_range_exits_1() {
    for margin in ["0", "1440"] {
        let output = weftd(&["-subnet-lease-renew-margin", margin], &[]);
        assert_eq!(output.status.code(), Some(1), "{margin}");
        assert!(
            stderr(&output).contains(RENEW_MARGIN_MESSAGE),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn flanneld_env_applies_when_the_flag_is_absent() {
    let output = weftd(&[], &[("FLANNELD_SUBNET_LEASE_RENEW_MARGIN", "0")]);
    exits_saying(&output, 1, RENEW_MARGIN_MESSAGE);
}

#[test]
fn command_line_overrides_flanneld_env() {
    // The environment holds a valid margin and a bad -v; the command line
    // sets both, so neither variable is read and the flag's 0 is refused.
    let output = weftd(
        &["--subnet-lease-renew-margin=0", "-v=1"],
        &[
            ("FLANNELD_SUBNET_LEASE_RENEW_MARGIN", "30"),
            ("FLANNELD_V", "loud"),
        ],
    );
    let err = exits_saying(&output, 1, RENEW_MARGIN_MESSAGE);
    assert!(!err.contains("FLANNELD_V"), "{err}");
}

#[test]
fn invalid_flanneld_env_exits_1_naming_the_variable() {
    let output = weftd(&[], &[("FLANNELD_HEALTHZ_PORT", "abc")]);
    exits_saying(&output, 1, "FLANNELD_HEALTHZ_PORT");
}

#[test]
fn password_is_not_logged() {
    // Without NODE_NAME the Kubernetes store stops weftd right after "CLI
    // flags config" is logged.
    let output = weftd(&["--etcd-password=hunter2", "--kube-subnet-mgr"], &[]);
    let err = stderr(&output);
    assert!(err.contains("CLI flags config"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn kube_mode_without_node_name_says_how_to_name_the_node() {
    let output = weftd(&["--kube-subnet-mgr"], &[]);
    exits_saying(&output, 1, "NODE_NAME");
}

#[test]
fn help_lists_no_unbuilt_backend_since_ipsec_runs() {
    let help = stdout(&weftd(&["--help"], &[]));
    let section = help
        .split("Not built yet:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'Not built yet' section:\n{help}"));
    assert!(section.contains("Every flag above works"), "{section}");
    assert!(!section.contains("ipsec"), "{section}");
}

/// An ipsec net-conf on a node without strongSwan's charon stops weftd
/// before it leases: a message naming charon and every place it was
/// looked for, and no subnet taken. charon is hidden from this weftd by a
/// private mount namespace with an empty directory over Debian's
/// `/usr/lib/ipsec` (needs root, as the other agent tests).
#[test]
fn ipsec_without_charon_exits_before_leasing_a_subnet() {
    use weft_store::kv::Kv as _;

    let dir = tempfile::tempdir().unwrap();
    let net_conf = dir.path().join("net-conf.json");
    let psk = "0".repeat(96);
    std::fs::write(
        &net_conf,
        format!(
            r#"{{"Network": "10.244.0.0/16", "Backend": {{"Type": "ipsec", "PSK": "{psk}"}}}}"#
        ),
    )
    .unwrap();
    let store = dir.path().join("leases.db");
    let subnet_env = dir.path().join("subnet.env");
    let script = format!(
        "mount --make-rprivate / && for d in /usr/lib/ipsec /usr/lib/strongswan /usr/libexec/ipsec /usr/libexec/strongswan; do [ -d $d ] && mount -t tmpfs none $d; done; exec {} --local-store={} --net-config-path={} --subnet-file={} --status-socket= --iface=lo --public-ip=192.0.2.1",
        env!("CARGO_BIN_EXE_weftd"),
        store.display(),
        net_conf.display(),
        subnet_env.display(),
    );
    let output = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_ne!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("charon"), "{err}");
    assert!(err.contains("/usr/lib/ipsec/charon"), "{err}");
    assert!(err.contains("strongswan"), "{err}");
    assert!(!err.contains(&psk), "the PSK must not be logged: {err}");
    assert!(!subnet_env.exists(), "no subnet.env may be written");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listing = runtime.block_on(async {
        let kv = weft_store::local::LocalKv::open(&store).unwrap();
        kv.list("").await.unwrap()
    });
    assert!(
        listing.entries.is_empty(),
        "the store must hold no lease: {:?}",
        listing.entries.iter().map(|e| &e.key).collect::<Vec<_>>()
    );
}
