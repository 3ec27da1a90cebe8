//! net-conf.json as hostile input, beyond the golden fixtures
//! (`netconf_golden.rs` pins each message; this pins properties): whoever
//! can edit the ConfigMap or the etcd config key controls this text, and
//! `weft config validate` prints its errors to an operator's terminal and
//! the agent to its log. So no input may panic, an error must never carry
//! control characters (a newline forges log lines, an escape sequence
//! rewrites the terminal) nor echo unbounded input, and what flannel
//! refuses must not be quietly read some other way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/hostile/known_gaps.rs"]
mod known_gaps;

use std::path::Path;

use proptest::prelude::*;
use weft_core::netconf::{NetConfError, NetConfig, parse};

/// The longest error (message and hint) any input may produce: enough for
/// the longest fixed message plus a 64-character excerpt of the input.
const MAX_ERROR_CHARS: usize = 600;

/// Inputs weft does not handle as stated yet, each with the fix it needs.
/// They still run (no panic); once fixed, the test fails until the entry
/// is removed, so this list cannot go stale.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// Hostile inputs with what must happen: `Err` with text the message must
/// contain, or `Ok`.
fn cases() -> Vec<(&'static str, String, Result<(), &'static str>)> {
    let n = r#""Network":"10.244.0.0/16""#;
    let ty = |t: &str| format!(r#"{{{n},"Backend":{{"Type":{}}}}}"#, serde_json::json!(t));
    vec![
        (
            "network-leading-zero-octet",
            r#"{"Network":"010.244.0.0/16"}"#.to_owned(),
            Err("invalid IPv4 CIDR format"),
        ),
        (
            "ipv6network-leading-zero-in-embedded-ipv4",
            format!(r#"{{{n},"EnableIPv6":true,"IPv6Network":"::ffff:010.244.0.0/120"}}"#),
            Err("invalid IPv6 CIDR format"),
        ),
        (
            "unknown-type-nul",
            ty("vxlan\u{0}"),
            Err("unknown backend type"),
        ),
        (
            "unknown-type-newline",
            ty("vxlan\nlevel=info msg=\"all good\""),
            Err("unknown backend type"),
        ),
        (
            "unknown-type-escape",
            ty("\u{1b}[2J\u{1b}[Hvxlan"),
            Err("unknown backend type"),
        ),
        (
            "unknown-type-long",
            ty(&"v".repeat(10_000)),
            Err("unknown backend type"),
        ),
        (
            "network-newline",
            r#"{"Network":"10.244.0.0/16\nlevel=info"}"#.to_owned(),
            Err("invalid IPv4 CIDR format"),
        ),
        (
            "refused-type-with-escape-case",
            ty("UDP"),
            Err("not supported by weft"),
        ),
        (
            "espproposal-escape",
            format!(
                r#"{{{n},"Backend":{{"Type":"ipsec","PSK":"{}","ESPProposal":"\u001b[2J"}}}}"#,
                "k".repeat(96)
            ),
            Err("Backend.ESPProposal must be"),
        ),
        (
            "subnetlen-near-i128",
            format!(r#"{{{n},"SubnetLen":-170141183460469231731687303715884105728}}"#),
            Err("SubnetLen must be a prefix length"),
        ),
        (
            "deeply-nested-unknown-key",
            format!(r#"{{{n},"x":{}{}}}"#, "[".repeat(120), "]".repeat(120)),
            Ok(()),
        ),
    ]
}

/// What is wrong with an error as shown to a person, if anything.
fn unfit_for_display(e: &NetConfError) -> Option<String> {
    let shown = format!("{e}\n{}", e.hint().unwrap_or_default());
    if shown.chars().count() > MAX_ERROR_CHARS {
        return Some(format!("{} characters", shown.chars().count()));
    }
    if let Some(c) = shown.chars().find(|c| c.is_control() && *c != '\n') {
        return Some(format!("control character {c:?}"));
    }
    if e.to_string().contains('\n') {
        return Some("a newline in the message".into());
    }
    None
}

#[test]
fn every_netconf_fixture_gives_a_displayable_outcome() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netconf");
    let mut seen = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".json") || name.ends_with(".expected.json") {
            continue;
        }
        seen += 1;
        if let Err(e) = parse(&std::fs::read_to_string(&path).unwrap())
            && let Some(why) = unfit_for_display(&e)
        {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(seen >= 200, "only {seen} fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hostile_configs_are_refused_cleanly() {
    let mut failures = Vec::new();
    for (name, text, want) in cases() {
        let got = parse(&text);
        let problem = match (&got, want) {
            (Ok(_), Ok(())) => None,
            (Err(e), Err(part)) if !e.to_string().contains(part) => {
                Some(format!("expected an error with {part:?}, got: {e}"))
            }
            (Err(e), Err(_)) => unfit_for_display(e),
            (Ok(cfg), Err(part)) => Some(format!(
                "expected an error with {part:?}, but it parsed: {:?}",
                cfg.ipv4
            )),
            (Err(e), Ok(())) => Some(format!("refused: {e}")),
        };
        match (problem, known_gaps::lookup(KNOWN_GAPS, name)) {
            (None, None) => {}
            (Some(p), None) => failures.push(format!("{name}: {p}")),
            (None, Some(_)) => failures.push(format!("{name}: fixed, remove it from KNOWN_GAPS")),
            (Some(p), Some(why)) => eprintln!("known gap {name}: {p}; needs: {why}"),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Near-valid documents: known keys in any case, with values of every JSON
/// type, so that the checks behind the JSON parser are reached.
fn near_valid() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("Network"),
        Just("IPv6Network"),
        Just("EnableIPv4"),
        Just("EnableIPv6"),
        Just("EnableNFTables"),
        Just("SubnetLen"),
        Just("SubnetMin"),
        Just("SubnetMax"),
        Just("IPv6SubnetLen"),
        Just("IPv6SubnetMin"),
        Just("IPv6SubnetMax"),
        Just("network"),
    ];
    let value = prop_oneof![
        Just("\"10.244.0.0/16\"".to_owned()),
        Just("\"fd00:10:244::/56\"".to_owned()),
        Just("\"10.244.7.0\"".to_owned()),
        Just("\"fd00:10:244:7::\"".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        (0u8..=140).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\"[0-9a-f.:/]{0,24}\"",
    ];
    let backend_key = prop_oneof![
        Just("Type"),
        Just("VNI"),
        Just("Port"),
        Just("MTU"),
        Just("GBP"),
        Just("DirectRouting"),
        Just("ListenPort"),
        Just("ListenPortV6"),
        Just("PSK"),
        Just("Mode"),
        Just("PersistentKeepaliveInterval"),
        Just("UDPEncap"),
        Just("ESPProposal"),
    ];
    let backend_value = prop_oneof![
        Just("\"vxlan\"".to_owned()),
        Just("\"wireguard\"".to_owned()),
        Just("\"host-gw\"".to_owned()),
        Just("\"ipip\"".to_owned()),
        Just("\"ipsec\"".to_owned()),
        Just("\"none\"".to_owned()),
        Just("\"auto\"".to_owned()),
        Just("\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"".to_owned()),
        Just(format!("\"{}\"", "p".repeat(96))),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u32..=70000).prop_map(|n| n.to_string()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        "\"[a-z0-9-]{0,12}\"",
    ];
    (
        proptest::collection::vec((key, value), 0..8),
        proptest::collection::vec((backend_key, backend_value), 0..6),
    )
        .prop_map(|(top, backend)| {
            let mut parts: Vec<String> = top.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let b: Vec<String> = backend
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            parts.push(format!("\"Backend\":{{{}}}", b.join(",")));
            format!("{{{}}}", parts.join(","))
        })
}

proptest! {
    // No regression files: the corpus in the repo is the record.
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        if let Err(e) = parse(&text) {
            let _ = (e.to_string(), e.hint());
        }
    }

    /// Any accepted config prints as a config meaning the same thing, and
    /// any refused one has a displayable error. The unknown keys are what
    /// the input had beyond its meaning: the printed config has none.
    #[test]
    fn near_valid_configs_round_trip_or_fail_cleanly(text in near_valid()) {
        match parse(&text) {
            Ok(cfg) => {
                if !text.contains("PSK") {
                    let printed = serde_json::to_string(&cfg).unwrap();
                    let again = parse(&printed).unwrap();
                    prop_assert!(again.unknown_keys.is_empty(), "{}", printed);
                    prop_assert_eq!(
                        NetConfig { unknown_keys: cfg.unknown_keys.clone(), ..again },
                        cfg
                    );
                }
            }
            Err(e) => {
                prop_assert!(unfit_for_display(&e).is_none(), "{}", e);
            }
        }
    }
}
