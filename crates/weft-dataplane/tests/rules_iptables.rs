//! The iptables backend against a real kernel, each test in a fresh network
//! namespace (root; skipped otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_rules;

use common_rules::{
    Netns, applied, family, fixture, layout, require_root, rules, spec_dual, spec_v4,
};
use weft_dataplane::rules::{Problem, Rules, RulesBackend, RulesError, RulesSpec};

const JUMP: &[&str] = &[
    "-m",
    "comment",
    "--comment",
    "flanneld masq",
    "-j",
    "FLANNEL-POSTRTG",
];

#[test]
fn installs_exactly_the_golden_layout() {
    let (ns, r) = applied(RulesBackend::Iptables, &spec_v4(true, true));
    // Byte for byte what a flannel node shows (current POSTRTG order), once
    // timestamps are dropped: a fresh namespace holds nothing else.
    assert_eq!(
        ns.iptables_save(false),
        fixture("iptables-vxlan-ipmasq.current.txt")
    );
    assert!(ns.check(&r, &spec_v4(true, true)).is_clean());
}

#[test]
fn hostgw_without_masquerade_matches_its_golden() {
    let (ns, _rules) = applied(RulesBackend::Iptables, &spec_v4(false, true));
    let golden = fixture("iptables-hostgw-noipmasq.v0.20.2.txt");
    assert_eq!(layout(&ns.iptables_save(false)), layout(&golden));
    let filter = common_rules::strip_comments(&ns.sh(&["iptables-save", "-t", "filter"]));
    assert!(
        filter.ends_with(&golden[golden.find(":FLANNEL-FWD").unwrap()..]),
        "{filter}"
    );
}

#[test]
fn applying_twice_or_after_a_tamper_never_duplicates() {
    let spec = spec_v4(true, true);
    let (ns, r) = applied(RulesBackend::Iptables, &spec);
    let first = ns.iptables_save(false);
    ns.apply(&r, &spec).unwrap();
    assert_eq!(ns.iptables_save(false), first);
    // Force a rewrite of the chain: the jump must still be there once.
    ns.sh(&["iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"]);
    ns.apply(&r, &spec).unwrap();
    assert_eq!(ns.iptables_save(false), first);
}

#[test]
fn tampering_is_reported_and_repaired() {
    let spec = spec_v4(true, true);
    let (ns, r) = applied(RulesBackend::Iptables, &spec);
    let good = ns.iptables_save(false);

    ns.sh(&["iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"]);
    let drift = ns.check(&r, &spec);
    assert!(
        matches!(&drift.problems[..], [Problem::Rules { place, found, .. }] if place == "IPv4 nat FLANNEL-POSTRTG" && found.is_empty()),
        "{drift}"
    );
    assert_eq!(
        drift.to_string(),
        "IPv4 nat FLANNEL-POSTRTG: 6 rule(s) missing, 0 unexpected"
    );
    ns.apply(&r, &spec).unwrap();
    assert!(ns.check(&r, &spec).is_clean());

    // A rule moved to the end: same set, wrong order.
    let moved = [
        "-s",
        "10.244.0.0/16",
        "-m",
        "comment",
        "--comment",
        "flanneld forward",
        "-j",
        "ACCEPT",
    ];
    ns.sh(&[
        &["iptables", "-t", "filter", "-D", "FLANNEL-FWD"][..],
        &moved,
    ]
    .concat());
    ns.sh(&[
        &["iptables", "-t", "filter", "-A", "FLANNEL-FWD"][..],
        &moved,
    ]
    .concat());
    assert_eq!(
        ns.check(&r, &spec).to_string(),
        "IPv4 filter FLANNEL-FWD: rules out of order or duplicated"
    );

    // The jump deleted, the whole forward chain deleted.
    ns.sh(&[&["iptables", "-t", "nat", "-D", "POSTROUTING"][..], JUMP].concat());
    let drift = ns.check(&r, &spec);
    assert!(
        drift
            .problems
            .iter()
            .any(|p| matches!(p, Problem::MissingJump { .. })),
        "{drift}"
    );
    ns.sh(&["iptables", "-t", "filter", "-F", "FORWARD"]);
    ns.sh(&["iptables", "-t", "filter", "-F", "FLANNEL-FWD"]);
    ns.sh(&["iptables", "-t", "filter", "-X", "FLANNEL-FWD"]);
    let drift = ns.check(&r, &spec);
    assert!(
        drift.problems.iter().any(
            |p| matches!(p, Problem::MissingChain { place } if place == "IPv4 filter FLANNEL-FWD")
        ),
        "{drift}"
    );

    ns.apply(&r, &spec).unwrap();
    assert_eq!(ns.iptables_save(false), good);
    assert!(ns.check(&r, &spec).is_clean());
}

#[test]
fn duplicate_jumps_and_old_flannel_rules_are_removed_others_kept() {
    require_root();
    let ns = Netns::new();
    let r = rules(RulesBackend::Iptables);
    let spec = spec_v4(true, true);
    // kube-proxy's jump first, then flannel's jump twice and a per-rule
    // leftover of flannel < 0.16 directly in POSTROUTING.
    let append: &[&str] = &["iptables", "-t", "nat", "-A", "POSTROUTING"];
    ns.sh(&["iptables", "-t", "nat", "-N", "KUBE-POSTROUTING"]);
    ns.sh(&[append, &["-j", "KUBE-POSTROUTING"]].concat());
    ns.apply(&r, &spec).unwrap();
    ns.sh(&[append, JUMP].concat());
    ns.sh(&[
        append,
        &[
            "-s",
            "10.244.0.0/16",
            "-d",
            "10.244.0.0/16",
            "-m",
            "comment",
            "--comment",
            "flanneld masq",
            "-j",
            "RETURN",
        ],
    ]
    .concat());

    let drift = ns.check(&r, &spec);
    let stale = drift
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::StaleRule { .. }))
        .count();
    assert_eq!((stale, drift.problems.len()), (2, 2), "{drift}");
    ns.apply(&r, &spec).unwrap();
    assert!(ns.check(&r, &spec).is_clean());
    let nat = ns.sh(&["iptables-save", "-t", "nat"]);
    let postrouting: Vec<&str> = nat
        .lines()
        .filter(|l| l.starts_with("-A POSTROUTING"))
        .collect();
    assert_eq!(
        postrouting,
        [
            "-A POSTROUTING -j KUBE-POSTROUTING",
            "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG"
        ]
    );
}

#[test]
fn a_new_network_or_lease_replaces_every_old_rule() {
    let (ns, r) = applied(RulesBackend::Iptables, &spec_v4(true, true));
    let moved = RulesSpec {
        families: vec![family("10.245.0.0/16", "10.245.9.0/24")],
        ..spec_v4(true, true)
    };
    assert!(!ns.check(&r, &moved).is_clean());
    ns.apply(&r, &moved).unwrap();
    let saved = ns.iptables_save(false);
    assert!(!saved.contains("10.244."), "{saved}");
    assert_eq!(layout(&saved).rules.len(), 8);
    assert_eq!(layout(&saved).jumps.len(), 2);
    assert!(ns.check(&r, &moved).is_clean());
}

#[test]
fn a_failing_commit_leaves_the_previous_rules() {
    let (ns, _rules) = applied(RulesBackend::Iptables, &spec_v4(true, true));
    let before = ns.iptables_save(false);

    let mut broken = Rules::new(RulesBackend::Iptables);
    broken.inject_fault_for_tests("-A FLANNEL-POSTRTG -j NO-SUCH-CHAIN");
    let broken = std::sync::Arc::new(broken);
    let moved = RulesSpec {
        families: vec![family("10.244.0.0/16", "10.244.7.0/24")],
        ..spec_v4(true, true)
    };
    let err = ns.apply(&broken, &moved).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RulesError::Failed { .. }), "{err:?}");
    assert!(
        msg.contains("iptables-restore --noflush -w` failed for IPv4 nat table"),
        "{msg}"
    );
    assert!(msg.contains("NO-SUCH-CHAIN"), "{msg}");
    assert!(msg.contains("xtables.lock"), "{msg}");
    assert_eq!(ns.iptables_save(false), before);
}

#[test]
fn switching_features_and_families_off_removes_their_chains() {
    let (ns, r) = applied(RulesBackend::Iptables, &spec_dual());
    assert!(ns.check(&r, &spec_dual()).is_clean());
    let v6 = ns.iptables_save(true);
    assert!(v6.contains("-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully"), "{v6}");
    assert_eq!(layout(&v6).rules.len(), 8);

    // IPv6 dropped from the config: both chains and both jumps reported,
    // then removed.
    let v4_only = spec_v4(true, true);
    let drift = ns.check(&r, &v4_only);
    assert_eq!(drift.problems.len(), 4, "{drift}");
    ns.apply(&r, &v4_only).unwrap();
    assert_eq!(layout(&ns.iptables_save(true)), Default::default());

    // --ip-masq off: chain and jump go, forward rules stay.
    let no_masq = spec_v4(false, true);
    ns.apply(&r, &no_masq).unwrap();
    let saved = ns.iptables_save(false);
    assert!(
        !saved.contains("FLANNEL-POSTRTG") && saved.contains("FLANNEL-FWD"),
        "{saved}"
    );
    assert!(ns.check(&r, &no_masq).is_clean());
}

#[test]
fn cleanup_removes_chains_and_jumps_and_is_idempotent() {
    let (ns, r) = applied(RulesBackend::Iptables, &spec_dual());
    // From the nftables manager, as weftd does at startup in nft mode.
    let nft = rules(RulesBackend::Nftables);
    ns.cleanup(&nft, nft.backend().other()).unwrap();
    for v6 in [false, true] {
        let saved = ns.iptables_save(v6);
        assert!(
            !saved.contains("FLANNEL") && !saved.contains("flanneld"),
            "{saved}"
        );
    }
    ns.cleanup(&nft, RulesBackend::Iptables).unwrap();
    // The iptables manager cleaning up nftables with nothing there.
    ns.cleanup(&r, RulesBackend::Nftables).unwrap();
}
