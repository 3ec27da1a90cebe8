//! Golden tests for net-conf.json: every `NAME.json` under
//! `tests/fixtures/netconf/` is parsed and compared with
//!
//! - `NAME.expected.json`: the effective configuration, exactly as
//!   `weft config validate` prints it (pretty JSON plus a newline), and
//!   `NAME.warnings.txt` when the file has unknown keys (one per line; no
//!   file means none); or
//! - `NAME.error.txt`: the error, exactly as `weft config validate` prints it
//!   on stderr (`error: <flannel's message>`, then `hint: …` when there is
//!   one).
//!
//! The expected files were written from flannel-compat §2/§3 (flannel's
//! messages and arithmetic), not from weft's output. All fixtures run and
//! every mismatch is shown as a line diff before the test fails. To add a
//! fixture, write `NAME.json`, run with `WEFT_BLESS=1` to create the
//! expected file, and check it by hand before committing it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use weft_core::netconf::{NetConfError, NetConfig, parse};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netconf")
}

/// Inputs, sorted by name.
fn inputs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.ends_with(".json") && !name.ends_with(".expected.json")
        })
        .collect();
    out.sort();
    out
}

fn sibling(input: &Path, suffix: &str) -> PathBuf {
    let stem = input.file_stem().unwrap().to_str().unwrap();
    input.with_file_name(format!("{stem}{suffix}"))
}

/// What `weft config validate` prints on stdout for a good config.
fn stdout_of(cfg: &NetConfig) -> String {
    serde_json::to_string_pretty(cfg).unwrap() + "\n"
}

/// What it prints on stderr for a bad one.
fn stderr_of(err: &NetConfError) -> String {
    let mut s = format!("error: {err}\n");
    if let Some(hint) = err.hint() {
        writeln!(s, "hint: {hint}").unwrap();
    }
    s
}

fn warnings_of(cfg: &NetConfig) -> String {
    cfg.unknown_keys.iter().map(|k| format!("{k}\n")).collect()
}

/// A line diff (longest common subsequence): ` ` same, `-` expected, `+`
/// actual.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            writeln!(out, "   {}", a[i]).unwrap();
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            writeln!(out, " + {}", b[j]).unwrap();
            j += 1;
        } else {
            writeln!(out, " - {}", a[i]).unwrap();
            i += 1;
        }
    }
    out
}

/// Compares one file's expected text with the actual text, blessing or
/// recording a failure.
fn check(path: &Path, actual: &str, bless: bool, failures: &mut Vec<String>) {
    let expected = fs::read_to_string(path).unwrap_or_default();
    if expected == actual {
        return;
    }
    if bless {
        if actual.is_empty() {
            let _ = fs::remove_file(path);
        } else {
            fs::write(path, actual).unwrap();
        }
        return;
    }
    failures.push(format!(
        "{}: mismatch (- expected, + actual)\n{}",
        path.display(),
        diff(&expected, actual)
    ));
}

#[test]
fn netconf_fixtures() {
    let bless = std::env::var_os("WEFT_BLESS").is_some();
    let mut failures = Vec::new();
    let inputs = inputs();
    assert!(
        inputs.len() > 100,
        "fixtures missing from {:?}",
        fixtures_dir()
    );
    for input in &inputs {
        let text = fs::read_to_string(input).unwrap();
        let expected = sibling(input, ".expected.json");
        let error = sibling(input, ".error.txt");
        let warnings = sibling(input, ".warnings.txt");
        match parse(&text) {
            Ok(cfg) if bless || expected.exists() => {
                check(&expected, &stdout_of(&cfg), bless, &mut failures);
                check(&warnings, &warnings_of(&cfg), bless, &mut failures);
                // The output is itself a config meaning the same thing.
                let again = parse(&stdout_of(&cfg));
                if !text.contains("PSK")
                    && again.as_ref().map(stdout_of).ok() != Some(stdout_of(&cfg))
                {
                    failures.push(format!(
                        "{}: output does not parse back to itself: {again:?}",
                        input.display()
                    ));
                }
            }
            Err(err) if bless || error.exists() => {
                check(&error, &stderr_of(&err), bless, &mut failures);
            }
            Ok(cfg) => failures.push(format!(
                "{}: parsed, but there is only an error file; got\n{}",
                input.display(),
                stdout_of(&cfg)
            )),
            Err(err) => failures.push(format!(
                "{}: refused, but there is no error file; got\n{}",
                input.display(),
                stderr_of(&err)
            )),
        }
        if expected.exists() && error.exists() {
            failures.push(format!(
                "{}: has both an expected and an error file",
                input.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// Keys must match whatever their case, and write the same config.
#[test]
fn key_case_does_not_matter() {
    let canonical =
        parse(r#"{"Network":"10.244.0.0/16","SubnetLen":26,"Backend":{"Type":"vxlan","VNI":4}}"#)
            .unwrap();
    for text in [
        r#"{"network":"10.244.0.0/16","subnetlen":26,"backend":{"type":"VXLAN","vni":4}}"#,
        r#"{"NETWORK":"10.244.0.0/16","SUBNETLEN":26,"BACKEND":{"TYPE":"vxlan","VNI":4}}"#,
        r#"{"nEtWoRk":"10.244.0.0/16","SubNetLen":26,"Backend":{"Type":"VxLaN","Vni":4}}"#,
    ] {
        assert_eq!(parse(text).unwrap(), canonical, "{text}");
    }
}

/// Hostile input gives an error, never a panic, and never echoes a secret.
#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let secret = "my-super-secret-password";
    let cases = [
        format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"wireguard","PSK":"{secret}"}}}}"#),
        format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"ipsec","PSK":"{secret}"}}}}"#),
        format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"wireguard","PSK":["{secret}"]}}}}"#),
        "{\"Network\":\"10.244.0.0/16\",\"Backend\":".to_string() + &"[".repeat(100_000),
        "{\"Network\":\"::/0\",\"EnableIPv6\":true,\"IPv6Network\":\"::/0\",\"IPv6SubnetLen\":1}".into(),
        "{\"EnableIPv4\":false,\"EnableIPv6\":true,\"IPv6Network\":\"::/0\",\"IPv6SubnetMin\":\"::\",\"IPv6SubnetMax\":\"ffff:ffff:ffff:ffff::\"}".into(),
        "\u{feff}{}".into(),
        "{\"Network\":\"10.244.0.0/16\",\"SubnetLen\":-9223372036854775809}".into(),
    ];
    for text in &cases {
        let shown = match parse(text) {
            Ok(cfg) => format!("{cfg:?} {}", stdout_of(&cfg)),
            Err(e) => format!("{e} {e:?} {:?}", e.hint()),
        };
        assert!(!shown.contains(secret), "{shown}");
    }
}
