//! The hostile lease corpus (`tests/fixtures/hostile/leases/`, format in its
//! README): every stored entry another node (or anyone with write access
//! to etcd) could leave under `subnets/`, decoded exactly as the store
//! decodes it and screened exactly as the store screens it, next to a good
//! peer. Each bad one must be left out for its own reason, the good one
//! kept, and nothing may panic: a peer lease is the most exposed input a
//! node reads, and a single panic there would stop every agent at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/hostile/accepted.rs"]
mod accepted;
#[path = "fixtures/hostile/corpus.rs"]
mod corpus;
#[path = "fixtures/hostile/known_gaps.rs"]
mod known_gaps;

use std::collections::BTreeMap;

use accepted::assert_valid;
use corpus::{KINDS, LeaseCase, config, decode, load_leases};
use proptest::prelude::*;
use weft_core::lease::Lease;
use weft_core::peer::{self, ScreenedPeers};

/// Cases whose expectation the product does not meet yet, each with the
/// fix it needs. They are still run (no panic, nothing invalid accepted);
/// once fixed, the test fails until the entry is removed, so this list
/// cannot go stale.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// The good peer of each config: the `accept-<config>` fixture.
fn good_peer(cases: &[LeaseCase], config: &str) -> (String, Lease) {
    let case = cases
        .iter()
        .find(|c| c.name == format!("accept-{config}"))
        .unwrap_or_else(|| panic!("no accept-{config}.lease"));
    let lease = decode(&case.key_str(), &case.value).unwrap();
    (case.name.clone(), lease)
}

/// What happened to `id` in a screening: `accept`, or the rejection's kind
/// and message.
fn outcome(screened: &ScreenedPeers, id: &str) -> (String, String) {
    if screened.accepted.iter().any(|(k, _)| k == id) {
        return ("accept".into(), String::new());
    }
    let r = screened
        .rejected
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("{id} neither accepted nor rejected: {screened:?}"));
    (r.reason.kind().to_owned(), r.to_string())
}

#[test]
fn corpus_is_well_formed_and_large_enough() {
    let cases = load_leases();
    assert!(cases.len() >= 150, "only {} lease cases", cases.len());
    for c in &cases {
        assert!(
            c.expect == "accept" || KINDS.contains(&c.expect.as_str()),
            "{}: unknown expectation {:?}",
            c.name,
            c.expect
        );
        let _ = config(&c.config);
    }
    // Every rejection reason is exercised, in the config the lab runs too.
    for kind in KINDS {
        assert!(
            cases.iter().any(|c| c.expect == *kind),
            "no case expects {kind}"
        );
    }
    // The kernel test writes every case into one store: two bad cases with
    // one key would overwrite each other.
    let mut keys = BTreeMap::new();
    for c in cases.iter().filter(|c| c.expect != "accept") {
        if let Some(other) = keys.insert(c.key.clone(), c.name.clone()) {
            panic!("{} and {other} share a key", c.name);
        }
    }
}

/// Each case alone, after the good peer (which is older, as stores order
/// peers by creation): the case gets exactly its expected outcome and the
/// good peer is still accepted.
#[test]
fn each_hostile_lease_is_rejected_for_its_reason_next_to_a_good_peer() {
    let cases = load_leases();
    let mut failures = Vec::new();
    for c in &cases {
        let (cfg, own) = config(&c.config);
        let (good_id, good) = good_peer(&cases, &c.config);
        let mut candidates = vec![(good_id.clone(), Ok(good))];
        if c.name != good_id {
            candidates.push((c.name.clone(), decode(&c.key_str(), &c.value)));
        }
        let screened = peer::screen(&cfg, &own, candidates);
        let (good_outcome, _) = outcome(&screened, &good_id);
        if good_outcome != "accept" {
            failures.push(format!("{}: the good peer was not accepted", c.name));
        }
        let (kind, message) = outcome(&screened, &c.name);
        let met = kind == c.expect && message.contains(&c.text);
        if let Some(why) = known_gaps::lookup(KNOWN_GAPS, &c.name) {
            if met {
                failures.push(format!("{}: fixed, remove it from KNOWN_GAPS", c.name));
            } else {
                eprintln!("known gap {}: got {kind}; needs: {why}", c.name);
            }
        } else if !met {
            failures.push(format!(
                "{}: expected {} containing {:?}, got {kind}: {message}",
                c.name, c.expect, c.text
            ));
        }
        for (_, lease) in &screened.accepted {
            assert_valid(&cfg, &own, lease);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// All cases of a config in one snapshot, as an agent meets them: the
/// outcome of each is the same as alone, because nothing rejected may
/// claim a subnet that would shadow a later lease.
#[test]
fn all_hostile_leases_together_give_the_same_outcomes() {
    let cases = load_leases();
    for (name, _, _) in corpus::CONFIGS {
        let (cfg, own) = config(name);
        let good = good_peer(&cases, name);
        let mine: Vec<&LeaseCase> = cases
            .iter()
            .filter(|c| c.config == *name && c.name != good.0)
            .collect();
        let candidates = std::iter::once((good.0.clone(), Ok(good.1.clone()))).chain(
            mine.iter()
                .map(|c| (c.name.clone(), decode(&c.key_str(), &c.value))),
        );
        let screened = peer::screen(&cfg, &own, candidates);
        assert_eq!(outcome(&screened, &good.0).0, "accept");
        for c in mine
            .into_iter()
            .filter(|c| known_gaps::lookup(KNOWN_GAPS, &c.name).is_none())
        {
            assert_eq!(outcome(&screened, &c.name).0, c.expect, "{}", c.name);
        }
        for (_, lease) in &screened.accepted {
            assert_valid(&cfg, &own, lease);
        }
    }
}

/// What the ipsec planner makes of every ipsec4 case that screening lets
/// through: one tunnel each, only between this node's subnet and a peer
/// subnet inside the cluster network, towards a usable public IP that is
/// neither ours nor inside the pod network. A hostile lease never becomes
/// an SA or a policy.
#[test]
fn ipsec_tunnels_come_only_from_accepted_leases() {
    use std::net::{IpAddr, Ipv4Addr};
    use weft_core::plan::{self, LocalIdentity, PlanInput, Underlay};

    let cases = load_leases();
    let (cfg, own) = config("ipsec4");
    let candidates = cases
        .iter()
        .filter(|c| c.config == "ipsec4")
        .map(|c| (c.name.clone(), decode(&c.key_str(), &c.value)));
    let screened = peer::screen(&cfg, &own, candidates);
    let underlay = Underlay {
        index: 2,
        name: "eth0".into(),
        mtu: 1500,
        addr_v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        addr_v6: None,
        connected: vec!["192.0.2.0/24".parse().unwrap()],
        driver: None,
    };
    let desired = plan::plan(&PlanInput {
        cfg: &cfg,
        own: &own,
        underlay: &underlay,
        local: &LocalIdentity::default(),
        peers: &screened.accepted,
        blackhole: false,
        kernel_release: "6.1.0",
    })
    .unwrap();
    assert_eq!(desired.ipsec.len(), screened.accepted.len());
    let network: ipnet::Ipv4Net = "10.244.0.0/16".parse().unwrap();
    for t in &desired.ipsec {
        assert_eq!(
            Some(ipnet::IpNet::V4(t.local_subnet)),
            own.v4.map(ipnet::IpNet::V4)
        );
        assert!(network.contains(&t.remote_subnet), "{t:?}");
        assert_ne!(t.remote_subnet, t.local_subnet, "{t:?}");
        assert!(!network.contains(&t.remote_public), "{t:?}");
        let ip = IpAddr::V4(t.remote_public);
        assert!(
            !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast(),
            "{t:?}"
        );
        assert_ne!(t.remote_public, Ipv4Addr::new(192, 0, 2, 1), "{t:?}");
        assert!(
            screened.accepted.iter().any(|(id, _)| *id == t.peer),
            "{t:?} is no accepted peer's"
        );
    }
    // The good peer and the two accepted oddities (a PSK in BackendData,
    // the backend type in capitals), nothing else.
    assert_eq!(desired.ipsec.len(), 3, "{:?}", desired.ipsec);
}

/// Screens one arbitrary entry in every config, next to the good peer: no
/// panic, the good peer kept, and the entry either rejected or valid.
fn screen_arbitrary(key: &str, value: &[u8]) -> Result<(), TestCaseError> {
    let cases = corpus_cache();
    for (name, _, _) in corpus::CONFIGS {
        let (cfg, own) = config(name);
        let good = good_peer(cases, name);
        let screened = peer::screen(
            &cfg,
            &own,
            [
                (good.0.clone(), Ok(good.1.clone())),
                ("arbitrary".to_owned(), decode(key, value)),
            ],
        );
        // The arbitrary entry may take the good peer's subnet only if it
        // came first; it did not, so the good peer always stays.
        prop_assert_eq!(outcome(&screened, &good.0).0, "accept");
        for (_, lease) in &screened.accepted {
            assert_valid(&cfg, &own, lease);
        }
    }
    Ok(())
}

fn corpus_cache() -> &'static [LeaseCase] {
    static CASES: std::sync::OnceLock<Vec<LeaseCase>> = std::sync::OnceLock::new();
    CASES.get_or_init(load_leases)
}

/// Fragments that make a random value likely to get past the JSON parser
/// and into the checks behind it.
fn lease_json() -> impl Strategy<Value = Vec<u8>> {
    let ip = prop_oneof![
        Just("\"198.51.100.7\"".to_owned()),
        Just("\"10.244.3.3\"".to_owned()),
        Just("\"127.0.0.1\"".to_owned()),
        Just("\"2001:db8::7\"".to_owned()),
        Just("\"fd00:10:244:9::1\"".to_owned()),
        Just("null".to_owned()),
        Just("7".to_owned()),
        "\"[0-9a-f:.%/]{0,40}\"",
    ];
    let backend_type = prop_oneof![
        Just("\"vxlan\"".to_owned()),
        Just("\"wireguard\"".to_owned()),
        Just("\"VXLAN\"".to_owned()),
        Just("\"\"".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
    ];
    let mac = prop_oneof![
        Just("\"02:42:c6:33:64:07\"".to_owned()),
        Just("\"ff:ff:ff:ff:ff:ff\"".to_owned()),
        "\"[0-9a-fA-F:-]{0,20}\"",
        Just("null".to_owned()),
    ];
    let vni = prop_oneof![
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("16777216".to_owned()),
        Just("1.5".to_owned()),
        Just("\"1\"".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
    ];
    let key = prop_oneof![
        Just("\"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"".to_owned()),
        Just("\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"".to_owned()),
        "\"[A-Za-z0-9+/=]{40,46}\"",
    ];
    let port = prop_oneof![
        Just("51820".to_owned()),
        Just("70000".to_owned()),
        Just("-1".to_owned())
    ];
    let data = prop_oneof![
        (vni.clone(), mac.clone()).prop_map(|(v, m)| format!(r#"{{"VNI":{v},"VtepMAC":{m}}}"#)),
        (key, port).prop_map(|(k, p)| format!(r#"{{"PublicKey":{k},"Port":{p}}}"#)),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("\"x\"".to_owned()),
    ];
    (
        ip.clone(),
        ip,
        backend_type,
        data.clone(),
        data,
        proptest::bool::ANY,
    )
        .prop_map(|(a, b, t, d, d6, lower)| {
            let json = format!(
                r#"{{"PublicIP":{a},"PublicIPv6":{b},"BackendType":{t},"BackendData":{d},"BackendV6Data":{d6}}}"#
            );
            if lower {
                json.to_lowercase().into_bytes()
            } else {
                json.into_bytes()
            }
        })
}

fn subnet_key() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..=255, 0u8..=40).prop_map(|(o, l)| format!("10.244.{o}.0-{l}")),
        (0u8..=255, 0u8..=255, proptest::option::of(0u8..=255)).prop_map(|(o, h, v6)| {
            match v6 {
                Some(x) => format!("10.244.{o}.{h}-24&fd00:10:244:{x:x}::-64"),
                None => format!("10.244.{o}.0-24"),
            }
        }),
        Just("0.0.0.0-0&fd00:10:244:7::-64".to_owned()),
        "[0-9.&:a-f-]{0,40}",
    ]
}

proptest! {
    // No regression files: the corpus in the repo is the record.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes as key and value: never a panic; rejected, or valid.
    #[test]
    fn arbitrary_bytes_never_panic(
        key in proptest::collection::vec(any::<u8>(), 0..64),
        value in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        screen_arbitrary(&String::from_utf8_lossy(&key), &value)?;
    }

    /// Near-valid keys and values, to reach the checks behind the parsers.
    #[test]
    fn near_valid_leases_are_rejected_or_valid(key in subnet_key(), value in lease_json()) {
        screen_arbitrary(&key, &value)?;
    }

    /// A corpus case with some bytes changed: the mutations fuzzers make.
    #[test]
    fn mutated_corpus_cases_are_rejected_or_valid(
        index in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let cases = corpus_cache();
        let case = &cases[index.index(cases.len())];
        let mut value = case.value.clone();
        if !value.is_empty() {
            for (at, byte) in edits {
                let i = at.index(value.len());
                value[i] = byte;
            }
        }
        screen_arbitrary(&case.key_str(), &value)?;
    }
}
