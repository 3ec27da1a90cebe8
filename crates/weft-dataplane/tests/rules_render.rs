//! Golden renders of the rules, without root: flannel's iptables and
//! nftables layout for vxlan + ip-masq, host-gw without masquerade,
//! dual-stack and fully-random off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common_rules;

use common_rules::{NETWORK6, SUBNET6, family, fixture, layout, spec_dual, spec_v4};
use weft_core::Family;
use weft_dataplane::rules::iptables::{Table, render_iptables_restore};
use weft_dataplane::rules::nftables::render_nft_script;
use weft_dataplane::rules::{Rules, RulesBackend, RulesError, RulesSpec, Tools};

/// Both tables' restore input, filter first as `iptables-save` prints them.
fn restore(spec: &RulesSpec, family: Family) -> String {
    [Table::Filter, Table::Nat]
        .iter()
        .filter_map(|t| render_iptables_restore(spec, family, *t))
        .collect()
}

#[test]
fn vxlan_ipmasq_ipv4_restore_input_is_exact() {
    let nat = render_iptables_restore(&spec_v4(true, true), Family::V4, Table::Nat).unwrap();
    assert_eq!(
        nat,
        "*nat\n\
         :FLANNEL-POSTRTG - [0:0]\n\
         -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG -s 10.244.6.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.6.0/24 -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.6.0/24 -m comment --comment \"flanneld masq\" -j RETURN\n\
         -A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n\
         -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n\
         -A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
         COMMIT\n"
    );
}

#[test]
fn vxlan_ipmasq_ipv4_matches_current_flannel_layout() {
    let got = layout(&restore(&spec_v4(true, true), Family::V4));
    let want = layout(&fixture("iptables-vxlan-ipmasq.current.txt"));
    assert_eq!(got.rules, want.rules);
    assert_eq!(got.jumps, want.jumps);
    // iptables-save lists chains in its own order; both chains, once each.
    let mut chains = got.chains;
    chains.sort();
    assert_eq!(chains, [":FLANNEL-FWD - [0:0]", ":FLANNEL-POSTRTG - [0:0]"]);
}

/// FLANNEL-FWD and both jumps are byte-identical to the v0.20.2 capture;
/// the current-order fixture differs from that capture only in the order
/// of FLANNEL-POSTRTG (see `rules::iptables::render`).
#[test]
fn forward_chain_and_jumps_are_byte_identical_to_the_v0_20_2_golden() {
    let golden = layout(&fixture("iptables-vxlan-ipmasq.v0.20.2.txt"));
    let got = layout(&restore(&spec_v4(true, true), Family::V4));
    let fwd = |l: &[String]| -> Vec<String> {
        l.iter()
            .filter(|r| r.starts_with("-A FLANNEL-FWD"))
            .cloned()
            .collect()
    };
    assert_eq!(fwd(&got.rules), fwd(&golden.rules));
    assert_eq!(got.jumps, golden.jumps);

    let v020 = fixture("iptables-vxlan-ipmasq.v0.20.2.txt");
    let current = fixture("iptables-vxlan-ipmasq.current.txt");
    let outside = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("-A FLANNEL-POSTRTG"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(outside(&v020), outside(&current));
    // The rules both versions share are spelled identically.
    let v020_rules = layout(&v020).rules;
    let shared: Vec<&String> = got
        .rules
        .iter()
        .filter(|r| v020_rules.contains(r))
        .collect();
    assert_eq!(
        shared.len(),
        2 + 4,
        "FWD ×2, mark, ! -s N -d S, both MASQUERADE"
    );
}

#[test]
fn hostgw_without_masquerade_has_forward_rules_only() {
    let spec = spec_v4(false, true);
    assert_eq!(render_iptables_restore(&spec, Family::V4, Table::Nat), None);
    let got = layout(&restore(&spec, Family::V4));
    let golden = layout(&fixture("iptables-hostgw-noipmasq.v0.20.2.txt"));
    assert_eq!(got, golden);
    let script = render_nft_script(&spec, Family::V4);
    assert!(
        script.contains("chain forward") && !script.contains("postrtg"),
        "{script}"
    );
}

#[test]
fn dual_stack_renders_ipv6_with_ff00_multicast() {
    let v6 = restore(&spec_dual(), Family::V6);
    let l = layout(&v6);
    assert!(l.rules.contains(
        &"-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully".to_owned()
    ));
    assert!(l.rules.contains(&"-A FLANNEL-FWD -d fd00:10:244::/56 -m comment --comment \"flanneld forward\" -j ACCEPT".to_owned()));
    assert!(!v6.contains("224.0.0.0/4") && !v6.contains("10.244."));
    assert_eq!(l.rules.len(), 8);
    assert_eq!(
        render_nft_script(&spec_dual(), Family::V6),
        fixture("nft-dualstack-ipv6.nft")
    );
    assert_eq!(
        render_nft_script(&spec_dual(), Family::V4),
        fixture("nft-vxlan-ipmasq-ipv4.nft")
    );
}

#[test]
fn fully_random_off_renders_plain_masquerade() {
    let spec = RulesSpec {
        fully_random: false,
        ..spec_v4(true, true)
    };
    let nat = render_iptables_restore(&spec, Family::V4, Table::Nat).unwrap();
    assert!(!nat.contains("random-fully"));
    assert_eq!(nat.matches("-j MASQUERADE\n").count(), 2);
    let script = render_nft_script(&spec, Family::V4);
    assert!(!script.contains("fully-random"));
    assert_eq!(script.matches(" masquerade\n").count(), 2);
}

#[test]
fn nft_script_for_the_golden_node() {
    assert_eq!(
        render_nft_script(&spec_v4(true, true), Family::V4),
        fixture("nft-vxlan-ipmasq-ipv4.nft")
    );
    // An unconfigured family only loses its table (the pair succeeds whether
    // or not it exists).
    assert_eq!(
        render_nft_script(&spec_v4(true, true), Family::V6),
        "add table ip6 flannel-ipv6\ndelete table ip6 flannel-ipv6\n"
    );
}

#[test]
fn unconfigured_family_renders_nothing_for_iptables() {
    assert_eq!(restore(&spec_v4(true, true), Family::V6), "");
}

#[test]
fn host_bits_are_cleared_as_the_kernel_would() {
    let spec = RulesSpec {
        families: vec![family("10.244.3.7/16", "10.244.6.9/24")],
        ..spec_v4(true, true)
    };
    assert_eq!(
        restore(&spec, Family::V4),
        restore(&spec_v4(true, true), Family::V4)
    );
}

#[test]
fn invalid_specs_are_refused_with_the_reason() {
    let outside = RulesSpec {
        families: vec![family("10.244.0.0/16", "10.245.6.0/24")],
        ..spec_v4(true, true)
    };
    let err = outside.validate().unwrap_err().to_string();
    assert!(
        err.contains("10.245.6.0/24 is not inside network 10.244.0.0/16"),
        "{err}"
    );

    let mut mixed = family("10.244.0.0/16", "10.244.6.0/24");
    mixed.subnet = SUBNET6.parse().unwrap();
    let err = RulesSpec {
        families: vec![mixed],
        ..spec_v4(true, true)
    }
    .validate()
    .unwrap_err();
    assert!(
        err.to_string().contains("both must be IPv4 prefixes"),
        "{err}"
    );

    let twice = RulesSpec {
        families: vec![family(NETWORK6, SUBNET6), family(NETWORK6, SUBNET6)],
        ..spec_dual()
    };
    assert!(
        twice
            .validate()
            .unwrap_err()
            .to_string()
            .contains("IPv6 is listed twice")
    );
}

#[test]
fn missing_tool_says_how_to_fix_it() {
    let tools = Tools {
        nft: "/nonexistent/nft".into(),
        ..Tools::default()
    };
    let rules = Rules::with_tools(RulesBackend::Nftables, tools);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(rules.apply(&spec_v4(true, true))).unwrap_err();
    assert!(matches!(err, RulesError::ToolMissing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "/nonexistent/nft not found: install nftables (the `nft` binary) or set EnableNFTables=false"
    );
    // Cleanup of a backend whose tool is absent has nothing to remove.
    rt.block_on(rules.cleanup(RulesBackend::Nftables)).unwrap();
}
