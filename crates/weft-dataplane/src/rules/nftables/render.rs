//! flannel's nftables layout (flannel-compat §6.2) as an `nft -f` script,
//! and as the JSON `nft -j list table` prints back. Pure.
//!
//! The rules differ from the iptables ones in two places, both copied from
//! flannel: the kube-proxy mark is matched exactly (`meta mark 0x4000`, not
//! masked), and the third RETURN is `saddr != S daddr N` where iptables has
//! `! -s N -d S`.

use ipnet::IpNet;
use serde_json::{Value, json};
use weft_core::Family;

use super::super::spec::{FamilyRules, RulesSpec};

pub const V4_TABLE: &str = "flannel-ipv4";
pub const V6_TABLE: &str = "flannel-ipv6";
/// kube-proxy's masquerade mark, matched exactly as flannel does.
const KUBE_PROXY_MARK: u32 = 0x4000;

/// `table <family> <name>` for one address family.
pub fn table_of(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("ip", V4_TABLE),
        Family::V6 => ("ip6", V6_TABLE),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Saddr,
    Daddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    Mark(u32),
    Addr {
        field: Field,
        negated: bool,
        net: IpNet,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Return,
    Accept,
    Masquerade { fully_random: bool },
}

/// One rule: matches then a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    matches: Vec<Match>,
    verdict: Verdict,
}

/// One base chain of our table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) name: &'static str,
    comment: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) hook: &'static str,
    /// The priority's name in the script (`srcnat`, `filter`)…
    prio_name: &'static str,
    /// …and its number in `nft -j` output.
    pub(crate) prio: i64,
    pub(crate) rules: Vec<Rule>,
}

fn addr(field: Field, negated: bool, net: IpNet) -> Match {
    Match::Addr {
        field,
        negated,
        net,
    }
}

/// The chains the spec wants for `family`, in flannel's creation order
/// (`postrtg` first); empty when the family is not configured.
pub(crate) fn chains(spec: &RulesSpec, family: Family) -> Vec<Chain> {
    let Some(fr) = spec.family(family) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if spec.masquerade {
        out.push(postrtg(fr, spec.fully_random));
    }
    if spec.forward {
        out.push(forward(fr));
    }
    out
}

fn postrtg(fr: &FamilyRules, fully_random: bool) -> Chain {
    use Field::{Daddr, Saddr};
    let (n, s) = (fr.network(), fr.subnet());
    let multicast = fr.multicast();
    let masq = Verdict::Masquerade { fully_random };
    let rule = |matches, verdict| Rule { matches, verdict };
    Chain {
        name: "postrtg",
        comment: "chain to manage traffic masquerading by flannel",
        kind: "nat",
        hook: "postrouting",
        prio_name: "srcnat",
        prio: 100,
        rules: vec![
            rule(vec![Match::Mark(KUBE_PROXY_MARK)], Verdict::Return),
            rule(
                vec![addr(Saddr, false, s), addr(Daddr, false, n)],
                Verdict::Return,
            ),
            rule(
                vec![addr(Saddr, false, n), addr(Daddr, false, s)],
                Verdict::Return,
            ),
            rule(
                vec![addr(Saddr, true, s), addr(Daddr, false, n)],
                Verdict::Return,
            ),
            rule(
                vec![addr(Saddr, false, n), addr(Daddr, true, multicast)],
                masq,
            ),
            rule(vec![addr(Saddr, true, n), addr(Daddr, false, n)], masq),
        ],
    }
}

fn forward(fr: &FamilyRules) -> Chain {
    let n = fr.network();
    Chain {
        name: "forward",
        comment: "chain to accept flannel traffic",
        kind: "filter",
        hook: "forward",
        prio_name: "filter",
        prio: 0,
        rules: vec![
            Rule {
                matches: vec![addr(Field::Saddr, false, n)],
                verdict: Verdict::Accept,
            },
            Rule {
                matches: vec![addr(Field::Daddr, false, n)],
                verdict: Verdict::Accept,
            },
        ],
    }
}

impl Rule {
    /// The rule in nft's language, e.g. `ip saddr != 10.244.6.0/24 ip daddr 10.244.0.0/16 return`.
    pub(crate) fn text(&self, proto: &str) -> String {
        let mut parts: Vec<String> = self
            .matches
            .iter()
            .map(|m| match m {
                Match::Mark(mark) => format!("meta mark {mark:#x}"),
                Match::Addr {
                    field,
                    negated,
                    net,
                } => format!(
                    "{proto} {} {}{net}",
                    field_name(*field),
                    if *negated { "!= " } else { "" }
                ),
            })
            .collect();
        parts.push(
            match self.verdict {
                Verdict::Return => "return",
                Verdict::Accept => "accept",
                Verdict::Masquerade { fully_random: true } => "masquerade fully-random",
                Verdict::Masquerade {
                    fully_random: false,
                } => "masquerade",
            }
            .to_owned(),
        );
        parts.join(" ")
    }

    /// The rule's `expr` array as nft 1.0.x prints it with `-j`.
    pub(crate) fn json(&self, proto: &str) -> Value {
        let mut exprs: Vec<Value> = self
            .matches
            .iter()
            .map(|m| match m {
                Match::Mark(mark) => {
                    json!({"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": mark}})
                }
                Match::Addr {
                    field,
                    negated,
                    net,
                } => json!({"match": {
                    "op": if *negated { "!=" } else { "==" },
                    "left": {"payload": {"protocol": proto, "field": field_name(*field)}},
                    "right": prefix_json(*net),
                }}),
            })
            .collect();
        exprs.push(match self.verdict {
            Verdict::Return => json!({"return": null}),
            Verdict::Accept => json!({"accept": null}),
            Verdict::Masquerade { fully_random: true } => {
                json!({"masquerade": {"flags": "fully-random"}})
            }
            Verdict::Masquerade {
                fully_random: false,
            } => json!({"masquerade": null}),
        });
        Value::Array(exprs)
    }
}

fn field_name(field: Field) -> &'static str {
    match field {
        Field::Saddr => "saddr",
        Field::Daddr => "daddr",
    }
}

/// nft prints a full-length prefix as a bare address.
fn prefix_json(net: IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.addr().to_string(), "len": net.prefix_len()}})
    }
}

/// The `nft -f -` script that makes `family`'s table exactly what `spec`
/// wants, in one transaction.
///
/// `add table` + `delete table` + `table { … }` replaces the table
/// wholesale: if any line fails (parse error, or the kernel refusing a
/// statement) the whole batch is rolled back and the old table stays, and
/// when it succeeds nothing of a previous network or lease survives. A
/// family with nothing wanted gets only the first two lines, which delete
/// the table if present and succeed if not.
pub fn render_nft_script(spec: &RulesSpec, family: Family) -> String {
    let (proto, name) = table_of(family);
    let mut s = format!("add table {proto} {name}\ndelete table {proto} {name}\n");
    let chains = chains(spec, family);
    if chains.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "table {proto} {name} {{\n\tcomment \"rules for {name}\"\n"
    ));
    for chain in &chains {
        s.push_str(&format!(
            "\tchain {} {{\n\t\tcomment \"{}\"\n",
            chain.name, chain.comment
        ));
        s.push_str(&format!(
            "\t\ttype {} hook {} priority {}; policy accept;\n",
            chain.kind, chain.hook, chain.prio_name
        ));
        for rule in &chain.rules {
            s.push_str(&format!("\t\t{}\n", rule.text(proto)));
        }
        s.push_str("\t}\n");
    }
    s.push_str("}\n");
    s
}
