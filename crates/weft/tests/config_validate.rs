//! `weft config validate`, run as the real binary.
//!
//! Every net-conf.json fixture of weft-core's golden tests goes through the
//! command: a fixture with `NAME.expected.json` must exit 0 with exactly
//! that on stdout (and its `NAME.warnings.txt` keys as warnings on stderr);
//! one with `NAME.error.txt` must exit 1 with exactly that on stderr.
//! A few hand-written cases pin the contract independently of the fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn weft(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn validate(path: &Path) -> Output {
    weft(&["config", "validate", path.to_str().unwrap()], None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../weft-core/tests/fixtures/netconf")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.json"))
}

/// A scratch file that removes itself.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("weft-cli-{}-{name}", std::process::id()));
        fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn valid_file_prints_the_effective_config() {
    let out = validate(&fixture("kube-flannel-yml"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::json!({
            "Network": "10.244.0.0/16",
            "SubnetLen": 24,
            "SubnetMin": "10.244.1.0",
            "SubnetMax": "10.244.255.0",
            "EnableIPv4": true,
            "EnableIPv6": false,
            "EnableNFTables": false,
            "Backend": {
                "Type": "vxlan",
                "VNI": 1,
                "Port": 8472,
                "MTU": 0,
                "GBP": false,
                "Learning": false,
                "DirectRouting": false,
                "TxChecksumOffload": null
            }
        })
    );
}

#[test]
fn dual_stack_computes_both_families() {
    let out = validate(&fixture("dual-stack-docs"));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["IPv6Network"], "2001:cafe:42::/56");
    assert_eq!(v["IPv6SubnetLen"], 64);
    assert_eq!(v["IPv6SubnetMin"], "2001:cafe:42:1::");
    assert_eq!(v["IPv6SubnetMax"], "2001:cafe:42:ff::");
}

#[test]
fn invalid_file_exits_1_with_flannels_message_first() {
    let out = validate(&fixture("v4-subnetlen-31"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.lines().next(),
        Some("error: SubnetLen must be less than /31")
    );

    let out = validate(&fixture("v4-subnetmin-unaligned"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().next(),
        Some("error: SubnetMin is not on a SubnetLen boundary: 10.244.1.128")
    );
}

#[test]
fn unknown_keys_warn_but_pass() {
    let out = validate(&fixture("unknown-keys"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        "warning: unknown key \"SubnetLenn\" ignored\n\
         warning: unknown key \"Networks\" ignored\n\
         warning: unknown key \"Backend.VNII\" ignored\n\
         warning: unknown key \"Backend.MacPrefix\" ignored\n"
    );
}

#[test]
fn missing_file_names_the_path() {
    let path = std::env::temp_dir().join("weft-cli-test-does-not-exist/net-conf.json");
    let out = validate(&path);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot read net-conf.json file "),
        "{stderr}"
    );
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn a_directory_is_not_a_file() {
    let dir = std::env::temp_dir();
    let out = validate(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(dir.to_str().unwrap()));
}

#[test]
fn psk_never_reaches_the_output() {
    let psk = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let file = TempFile::new(
        "psk.json",
        &format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"wireguard","PSK":"{psk}"}}}}"#),
    );
    let out = validate(&file.0);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains(psk));
    assert!(text(&out.stdout).contains("\"PSK\": \"<redacted>\""));

    let bad = TempFile::new(
        "bad-psk.json",
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard","PSK":"hunter2-hunter2"}}"#,
    );
    let out = validate(&bad.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains("hunter2"));
}

#[test]
fn output_is_a_config_that_validates_to_itself() {
    let first = validate(&fixture("ci-uppercase-keys"));
    assert_eq!(first.status.code(), Some(0));
    let again = weft(&["config", "validate", "-"], Some(&text(&first.stdout)));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), text(&first.stdout));
    assert_eq!(text(&again.stderr), "");
}

#[test]
fn help_explains_the_commands() {
    let out = weft(&["--help"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("config"));
    let out = weft(&["config", "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("validate"));
    let out = weft(&["config", "validate", "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("Exit status"), "{help}");
    assert!(help.contains("standard input"), "{help}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(weft(&["config", "validate"], None).status.code(), Some(2));
    assert_eq!(weft(&["frobnicate"], None).status.code(), Some(2));
}

/// Every golden fixture through the binary.
#[test]
fn every_fixture_through_the_binary() {
    let mut failures = Vec::new();
    let mut count = 0;
    let mut names: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(".json") && !n.ends_with(".expected.json")
        })
        .collect();
    names.sort();
    for input in names {
        count += 1;
        let stem = input.file_stem().unwrap().to_str().unwrap().to_string();
        let sibling = |suffix: &str| input.with_file_name(format!("{stem}{suffix}"));
        let out = validate(&input);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        if let Ok(expected) = fs::read_to_string(sibling(".expected.json")) {
            let warnings: String = fs::read_to_string(sibling(".warnings.txt"))
                .unwrap_or_default()
                .lines()
                .map(|k| format!("warning: unknown key {k:?} ignored\n"))
                .collect();
            if out.status.code() != Some(0) || stdout != expected || stderr != warnings {
                failures.push(format!(
                    "{stem}: status {:?}\n--- stdout\n{stdout}--- expected\n{expected}--- stderr\n{stderr}--- expected\n{warnings}",
                    out.status.code()
                ));
            }
        } else {
            let expected = fs::read_to_string(sibling(".error.txt")).unwrap();
            if out.status.code() != Some(1) || !stdout.is_empty() || stderr != expected {
                failures.push(format!(
                    "{stem}: status {:?}\n--- stderr\n{stderr}--- expected\n{expected}--- stdout\n{stdout}",
                    out.status.code()
                ));
            }
        }
    }
    assert!(count > 100, "fixtures not found in {:?}", fixtures());
    assert!(
        failures.is_empty(),
        "{} of {count} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
