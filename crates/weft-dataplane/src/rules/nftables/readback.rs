//! Reading `nft -j list table …` back and comparing it with the spec. Pure.
//!
//! Rules are compared as JSON values (the `expr` arrays), not as text:
//! JSON is nft's machine interface, while its text output re-spells values
//! (`meta mark 0x00004000`). Table and chain comments are not compared:
//! nft 1.0.6 leaves them out of its JSON.

use serde_json::Value;
use weft_core::Family;

use super::super::drift::Problem;
use super::render::{Chain, table_of};

/// A chain as nft printed it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InstalledChain {
    pub(crate) name: String,
    /// `type … hook … priority … policy …`, or empty for a regular chain.
    pub(crate) definition: String,
    pub(crate) rules: Vec<Value>,
}

/// Parses the output of `nft -j list table <family> <name>`.
pub(crate) fn parse_table(json: &str) -> Result<Vec<InstalledChain>, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no \"nftables\" array")?;
    let mut chains: Vec<InstalledChain> = Vec::new();
    for item in items {
        if let Some(c) = item.get("chain") {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .ok_or("chain without a name")?;
            chains.push(InstalledChain {
                name: name.to_owned(),
                definition: definition_of(c),
                rules: Vec::new(),
            });
        } else if let Some(r) = item.get("rule") {
            let chain = r
                .get("chain")
                .and_then(Value::as_str)
                .ok_or("rule without a chain")?;
            let expr = r.get("expr").cloned().unwrap_or(Value::Null);
            match chains.iter_mut().find(|c| c.name == chain) {
                Some(c) => c.rules.push(expr),
                None => return Err(format!("rule in unknown chain {chain:?}")),
            }
        }
    }
    Ok(chains)
}

fn definition_of(chain: &Value) -> String {
    let field = |k: &str| {
        chain
            .get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    match (field("type"), field("hook"), field("prio"), field("policy")) {
        (Some(t), Some(h), Some(p), policy) => format!(
            "type {t} hook {h} priority {p} policy {}",
            policy.unwrap_or_else(|| "accept".into())
        ),
        _ => String::new(),
    }
}

fn definition_wanted(chain: &Chain) -> String {
    format!(
        "type {} hook {} priority {} policy accept",
        chain.kind, chain.hook, chain.prio
    )
}

/// The differences between the installed table (`None`: absent) and the
/// chains wanted for `family`.
pub(crate) fn diff(
    family: Family,
    want: &[Chain],
    installed: Option<&[InstalledChain]>,
) -> Vec<Problem> {
    let (proto, name) = table_of(family);
    let table_place = format!("nft {proto} {name}");
    let place = |chain: &str| format!("{table_place} {chain}");
    let mut problems = Vec::new();
    let Some(installed) = installed else {
        for chain in want {
            problems.push(Problem::MissingChain {
                place: place(chain.name),
            });
        }
        return problems;
    };
    if want.is_empty() {
        problems.push(Problem::Unexpected { place: table_place });
        return problems;
    }
    for chain in want {
        let Some(found) = installed.iter().find(|c| c.name == chain.name) else {
            problems.push(Problem::MissingChain {
                place: place(chain.name),
            });
            continue;
        };
        let expected_def = definition_wanted(chain);
        if found.definition != expected_def {
            problems.push(Problem::ChainDefinition {
                place: place(chain.name),
                expected: expected_def,
                found: found.definition.clone(),
            });
        }
        let expected: Vec<Value> = chain.rules.iter().map(|r| r.json(proto)).collect();
        if found.rules != expected {
            problems.push(Problem::Rules {
                place: place(chain.name),
                expected: expected.iter().map(Value::to_string).collect(),
                found: found.rules.iter().map(Value::to_string).collect(),
            });
        }
    }
    for extra in installed
        .iter()
        .filter(|c| !want.iter().any(|w| w.name == c.name))
    {
        problems.push(Problem::Unexpected {
            place: place(&extra.name),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::nftables::render::chains;
    use crate::rules::{FamilyRules, RulesSpec};

    fn spec() -> RulesSpec {
        RulesSpec {
            families: vec![FamilyRules::new(
                "10.244.0.0/16".parse().unwrap(),
                "10.244.6.0/24".parse().unwrap(),
            )],
            masquerade: true,
            fully_random: true,
            forward: true,
        }
    }

    /// Captured from nft 1.0.6 after applying `spec()` (one rule kept per
    /// chain to stay short).
    const LISTED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "ip", "name": "flannel-ipv4", "handle": 4}},
      {"chain": {"family": "ip", "table": "flannel-ipv4", "name": "postrtg", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "flannel-ipv4", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
      {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "postrtg", "handle": 3, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 16384}}, {"return": null}]}},
      {"rule": {"family": "ip", "table": "flannel-ipv4", "chain": "forward", "handle": 9, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"accept": null}]}}]}"#;

    #[test]
    fn parses_chains_and_rules() {
        let chains = parse_table(LISTED).unwrap();
        assert_eq!(chains.len(), 2);
        assert_eq!(
            chains[0].definition,
            "type nat hook postrouting priority 100 policy accept"
        );
        assert_eq!(chains[1].rules.len(), 1);
    }

    #[test]
    fn first_rules_match_their_json_and_truncation_is_reported() {
        let installed = parse_table(LISTED).unwrap();
        let want = chains(&spec(), Family::V4);
        assert_eq!(installed[0].rules[0], want[0].rules[0].json("ip"));
        assert_eq!(installed[1].rules[0], want[1].rules[0].json("ip"));
        let problems = diff(Family::V4, &want, Some(&installed));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| matches!(p, Problem::Rules { .. })));
    }

    #[test]
    fn absent_and_unwanted_tables() {
        let want = chains(&spec(), Family::V4);
        assert_eq!(diff(Family::V4, &want, None).len(), 2);
        assert!(diff(Family::V6, &[], None).is_empty());
        let installed = parse_table(LISTED).unwrap();
        let problems = diff(Family::V4, &[], Some(&installed));
        assert_eq!(
            problems,
            [Problem::Unexpected {
                place: "nft ip flannel-ipv4".into()
            }]
        );
    }
}
