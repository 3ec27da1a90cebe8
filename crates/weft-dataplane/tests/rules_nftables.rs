//! The nftables backend against a real kernel, each test in a fresh network
//! namespace (root; skipped otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_rules;

use std::sync::Arc;

use common_rules::{Netns, applied, family, require_root, rules, spec_dual, spec_v4};
use serde_json::{Value, json};
use weft_dataplane::rules::{Problem, Rules, RulesBackend, RulesError, RulesSpec};

/// Chains of one table in `nft -j list ruleset`: name → (chain object, rule
/// expr arrays in order).
fn chains(ruleset: &Value, family: &str, table: &str) -> Vec<(Value, Vec<Value>)> {
    let items = ruleset["nftables"].as_array().unwrap();
    let mine = |o: &Value| o["family"] == family && o["table"] == table;
    items
        .iter()
        .filter_map(|i| i.get("chain").filter(|c| mine(c)))
        .map(|c| {
            let rules = items
                .iter()
                .filter_map(|i| i.get("rule").filter(|r| mine(r) && r["chain"] == c["name"]))
                .map(|r| r["expr"].clone())
                .collect();
            (c.clone(), rules)
        })
        .collect()
}

fn table_handle(ruleset: &Value, family: &str, name: &str) -> Option<Value> {
    ruleset["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("table"))
        .find(|t| t["family"] == family && t["name"] == name)
        .map(|t| t["handle"].clone())
}

fn prefix(addr: &str, len: u8) -> Value {
    json!({"prefix": {"addr": addr, "len": len}})
}

fn addr_match(op: &str, proto: &str, field: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": {"payload": {"protocol": proto, "field": field}}, "right": right}})
}

#[test]
fn installs_flannels_tables_chains_and_rules() {
    let (ns, r) = applied(RulesBackend::Nftables, &spec_dual());
    let ruleset = ns.nft_ruleset();

    let v4 = chains(&ruleset, "ip", "flannel-ipv4");
    assert_eq!(v4.len(), 2);
    let (postrtg, masq) = &v4[0];
    assert_eq!(
        (
            &postrtg["name"],
            &postrtg["type"],
            &postrtg["hook"],
            &postrtg["prio"],
            &postrtg["policy"]
        ),
        (
            &json!("postrtg"),
            &json!("nat"),
            &json!("postrouting"),
            &json!(100),
            &json!("accept")
        )
    );
    let (forward, fwd) = &v4[1];
    assert_eq!(
        (
            &forward["name"],
            &forward["type"],
            &forward["hook"],
            &forward["prio"],
            &forward["policy"]
        ),
        (
            &json!("forward"),
            &json!("filter"),
            &json!("forward"),
            &json!(0),
            &json!("accept")
        )
    );
    let n = || prefix("10.244.0.0", 16);
    let s = || prefix("10.244.6.0", 24);
    let ret = json!({"return": null});
    let fr = json!({"masquerade": {"flags": "fully-random"}});
    assert_eq!(
        masq,
        &vec![
            json!([{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 0x4000}}, ret]),
            json!([
                addr_match("==", "ip", "saddr", s()),
                addr_match("==", "ip", "daddr", n()),
                ret
            ]),
            json!([
                addr_match("==", "ip", "saddr", n()),
                addr_match("==", "ip", "daddr", s()),
                ret
            ]),
            json!([
                addr_match("!=", "ip", "saddr", s()),
                addr_match("==", "ip", "daddr", n()),
                ret
            ]),
            json!([
                addr_match("==", "ip", "saddr", n()),
                addr_match("!=", "ip", "daddr", prefix("224.0.0.0", 4)),
                fr
            ]),
            json!([
                addr_match("!=", "ip", "saddr", n()),
                addr_match("==", "ip", "daddr", n()),
                fr
            ]),
        ]
    );
    let accept = json!({"accept": null});
    assert_eq!(
        fwd,
        &vec![
            json!([addr_match("==", "ip", "saddr", n()), accept]),
            json!([addr_match("==", "ip", "daddr", n()), accept]),
        ]
    );

    let v6 = chains(&ruleset, "ip6", "flannel-ipv6");
    assert_eq!(v6.len(), 2);
    assert_eq!(
        v6[0].1[4],
        json!([
            addr_match("==", "ip6", "saddr", prefix("fd00:10:244::", 56)),
            addr_match("!=", "ip6", "daddr", prefix("ff00::", 8)),
            fr
        ])
    );
    // Comments are in the text listing (nft 1.0.6 leaves them out of JSON).
    let text = ns.sh(&["nft", "list", "table", "ip", "flannel-ipv4"]);
    for comment in [
        "comment \"rules for flannel-ipv4\"",
        "comment \"chain to manage traffic masquerading by flannel\"",
        "comment \"chain to accept flannel traffic\"",
    ] {
        assert!(text.contains(comment), "{text}");
    }
    assert!(ns.check(&r, &spec_dual()).is_clean());
}

#[test]
fn an_unchanged_spec_is_not_rewritten() {
    let (ns, r) = applied(RulesBackend::Nftables, &spec_v4(true, true));
    let handle = table_handle(&ns.nft_ruleset(), "ip", "flannel-ipv4").unwrap();
    ns.apply(&r, &spec_v4(true, true)).unwrap();
    let ruleset = ns.nft_ruleset();
    assert_eq!(
        table_handle(&ruleset, "ip", "flannel-ipv4"),
        Some(handle.clone())
    );
    assert_eq!(chains(&ruleset, "ip", "flannel-ipv4")[0].1.len(), 6);

    // A new lease replaces the table: old rules cannot survive.
    let moved = RulesSpec {
        families: vec![family("10.244.0.0/16", "10.244.7.0/24")],
        ..spec_v4(true, true)
    };
    ns.apply(&r, &moved).unwrap();
    let ruleset = ns.nft_ruleset();
    assert_ne!(table_handle(&ruleset, "ip", "flannel-ipv4"), Some(handle));
    let text = ruleset.to_string();
    assert!(
        !text.contains("10.244.6.0") && text.contains("10.244.7.0"),
        "{text}"
    );
    assert!(ns.check(&r, &moved).is_clean());
}

#[test]
fn a_failing_transaction_leaves_the_previous_table() {
    let (ns, r) = applied(RulesBackend::Nftables, &spec_v4(true, true));
    let before = ns.sh(&["nft", "list", "ruleset"]);
    let moved = RulesSpec {
        families: vec![family("10.244.0.0/16", "10.244.7.0/24")],
        ..spec_v4(true, true)
    };

    // Refused by the kernel (masquerade outside a nat chain), then by the parser.
    for fault in [
        "chain broken { type filter hook forward priority filter; masquerade; }",
        "this is not nft syntax",
    ] {
        let mut broken = Rules::new(RulesBackend::Nftables);
        broken.inject_fault_for_tests(fault);
        let err = ns.apply(&Arc::new(broken), &moved).unwrap_err();
        assert!(matches!(err, RulesError::Failed { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("`nft -f -` failed for nftables table ip flannel-ipv4"),
            "{msg}"
        );
        assert!(msg.contains("nft_chain_nat"), "{msg}");
        assert_eq!(ns.sh(&["nft", "list", "ruleset"]), before);
    }
    assert!(ns.check(&r, &spec_v4(true, true)).is_clean());
}

#[test]
fn tampering_is_reported_and_repaired() {
    let spec = spec_v4(true, true);
    let (ns, r) = applied(RulesBackend::Nftables, &spec);

    ns.sh(&["nft", "flush", "chain", "ip", "flannel-ipv4", "postrtg"]);
    ns.sh(&["nft", "delete", "chain", "ip", "flannel-ipv4", "forward"]);
    ns.sh(&["nft", "add", "chain", "ip", "flannel-ipv4", "intruder"]);
    let drift = ns.check(&r, &spec);
    assert_eq!(
        drift.to_string(),
        "nft ip flannel-ipv4 postrtg: 6 rule(s) missing, 0 unexpected; \
         nft ip flannel-ipv4 forward: missing; \
         nft ip flannel-ipv4 intruder: present but not wanted"
    );
    ns.apply(&r, &spec).unwrap();
    assert!(ns.check(&r, &spec).is_clean());

    // A base chain redefined with another priority.
    ns.sh(&["nft", "delete", "table", "ip", "flannel-ipv4"]);
    ns.sh(&[
        "nft",
        "add table ip flannel-ipv4 { chain forward { type filter hook forward priority 10; }; }",
    ]);
    let drift = ns.check(&r, &spec);
    assert!(
        drift.problems.iter().any(
            |p| matches!(p, Problem::ChainDefinition { found, .. } if found.contains("priority 10"))
        ),
        "{drift}"
    );
    ns.apply(&r, &spec).unwrap();
    assert!(ns.check(&r, &spec).is_clean());
}

#[test]
fn fully_random_off_and_features_off() {
    require_root();
    let ns = Netns::new();
    let r = rules(RulesBackend::Nftables);
    let plain = RulesSpec {
        fully_random: false,
        ..spec_dual()
    };
    ns.apply(&r, &plain).unwrap();
    let v4 = chains(&ns.nft_ruleset(), "ip", "flannel-ipv4");
    assert_eq!(v4[0].1[5][2], json!({"masquerade": null}));
    assert!(ns.check(&r, &plain).is_clean());
    assert!(
        !ns.check(&r, &spec_dual()).is_clean(),
        "fully-random is supported here, so it is expected"
    );

    let hostgw = spec_v4(false, true);
    ns.apply(&r, &hostgw).unwrap();
    let ruleset = ns.nft_ruleset();
    let names: Vec<Value> = chains(&ruleset, "ip", "flannel-ipv4")
        .iter()
        .map(|c| c.0["name"].clone())
        .collect();
    assert_eq!(names, [json!("forward")]);
    assert_eq!(table_handle(&ruleset, "ip6", "flannel-ipv6"), None);
    assert!(ns.check(&r, &hostgw).is_clean());
}

#[test]
fn cleanup_removes_both_tables_and_is_idempotent() {
    let (ns, r) = applied(RulesBackend::Nftables, &spec_dual());
    // Someone else's table is left alone.
    ns.sh(&["nft", "add", "table", "inet", "kube-proxy"]);
    let ipt = rules(RulesBackend::Iptables);
    ns.cleanup(&ipt, ipt.backend().other()).unwrap();
    let ruleset = ns.nft_ruleset();
    assert_eq!(table_handle(&ruleset, "ip", "flannel-ipv4"), None);
    assert_eq!(table_handle(&ruleset, "ip6", "flannel-ipv6"), None);
    assert!(table_handle(&ruleset, "inet", "kube-proxy").is_some());
    ns.cleanup(&ipt, RulesBackend::Nftables).unwrap();
    assert!(ns.check(&r, &spec_dual()).problems.len() == 4);
}
