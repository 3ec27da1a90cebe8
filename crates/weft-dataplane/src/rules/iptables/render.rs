//! flannel's iptables layout as text, and the `iptables-restore` input that
//! converges a table to it. Pure: unit-tested without root.
//!
//! Every rule is written exactly as `iptables-save` prints it back (option
//! order, quoting, compressed IPv6), so `check` can compare lines as strings.
//! The FLANNEL-POSTRTG order (current flannel, not the v0.20.2 golden) is
//! explained in the parent module.

use weft_core::Family;

use super::super::spec::{FamilyRules, RulesSpec};
use super::save::{SavedTable, TableState, analyse};

/// The nat chain, jumped from POSTROUTING.
pub const POSTRTG_CHAIN: &str = "FLANNEL-POSTRTG";
/// The filter chain, jumped from FORWARD.
pub const FWD_CHAIN: &str = "FLANNEL-FWD";
/// kube-proxy marks packets it will masquerade itself; flannel returns early
/// for them to avoid double NAT.
pub const KUBE_PROXY_MARK: &str = "0x4000/0x4000";

/// The two tables weft writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `FLANNEL-POSTRTG`, masquerade.
    Nat,
    /// `FLANNEL-FWD`, forward accept.
    Filter,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Nat, Table::Filter];

    pub fn name(self) -> &'static str {
        match self {
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }

    /// The chain weft owns in this table.
    pub fn chain(self) -> &'static str {
        match self {
            Table::Nat => POSTRTG_CHAIN,
            Table::Filter => FWD_CHAIN,
        }
    }

    /// The built-in chain that jumps into ours.
    pub fn builtin(self) -> &'static str {
        match self {
            Table::Nat => "POSTROUTING",
            Table::Filter => "FORWARD",
        }
    }

    /// flannel's comment, as `iptables-save` prints it (quoted: it has a
    /// space). Rules carrying it in the built-in chain are flannel's.
    pub(crate) fn comment(self) -> &'static str {
        match self {
            Table::Nat => "-m comment --comment \"flanneld masq\"",
            Table::Filter => "-m comment --comment \"flanneld forward\"",
        }
    }
}

/// The jump rule from the built-in chain (without `-A CHAIN`).
pub fn jump_rule(table: Table) -> String {
    format!("{} -j {}", table.comment(), table.chain())
}

/// The rules of our chain for one family (without `-A CHAIN`), in order.
pub fn chain_rules(table: Table, fr: &FamilyRules, fully_random: bool) -> Vec<String> {
    let (n, s, c) = (fr.network(), fr.subnet(), table.comment());
    match table {
        Table::Filter => vec![
            format!("-s {n} {c} -j ACCEPT"),
            format!("-d {n} {c} -j ACCEPT"),
        ],
        Table::Nat => {
            let masq = if fully_random {
                "MASQUERADE --random-fully"
            } else {
                "MASQUERADE"
            };
            vec![
                format!("-m mark --mark {KUBE_PROXY_MARK} {c} -j RETURN"),
                format!("-s {s} -d {n} {c} -j RETURN"),
                format!("-s {n} -d {s} {c} -j RETURN"),
                format!("! -s {n} -d {s} {c} -j RETURN"),
                format!("-s {n} ! -d {} {c} -j {masq}", fr.multicast()),
                format!("! -s {n} -d {n} {c} -j {masq}"),
            ]
        }
    }
}

/// What the spec wants in `table` for `family`: the chain's rules, or `None`
/// when the chain (and its jump) should not exist.
pub fn wanted(spec: &RulesSpec, family: Family, table: Table) -> Option<Vec<String>> {
    let on = match table {
        Table::Nat => spec.masquerade,
        Table::Filter => spec.forward,
    };
    let fr = spec.family(family).filter(|_| on)?;
    Some(chain_rules(table, fr, spec.fully_random))
}

/// The `iptables-restore --noflush` input that installs the spec's `table`
/// for `family` on a host holding none of it yet; `None` when the spec
/// wants nothing there. Used for documentation and golden tests; `apply`
/// renders against what is really installed.
///
/// The chain is declared (`:FLANNEL-POSTRTG - [0:0]`), which empties it
/// inside the same commit that refills it: traffic never meets an empty
/// chain (flannel #2237), and rules of a previous network or lease cannot
/// survive a change. The jump is appended only when missing.
pub fn render_iptables_restore(spec: &RulesSpec, family: Family, table: Table) -> Option<String> {
    let want = wanted(spec, family, table);
    let state = analyse(table, &SavedTable::default(), want.is_some());
    restore_input(table, want.as_deref(), &state)
}

/// The input converging one table from `state` to `want`, or `None` when
/// nothing differs.
///
/// Declaring `:FLANNEL-POSTRTG - [0:0]` empties the chain *inside* the same
/// commit that refills it, so traffic sees either the old rules or the new,
/// never an empty chain (flannel's startup `ClearChain` is flannel #2237).
/// Because the chain is rewritten wholesale, rules for a previous network or
/// lease cannot survive a change; flannel needs the previous subnet.env to
/// find and delete them, weft does not. The jump is appended only when no
/// exact copy exists, so a restart neither duplicates nor moves it; other
/// rules with flannel's comment in the built-in chain (duplicate jumps,
/// per-rule leftovers of old flannel) are deleted in the same commit.
pub(crate) fn restore_input(
    table: Table,
    want: Option<&[String]>,
    state: &TableState,
) -> Option<String> {
    let (chain, builtin) = (table.chain(), table.builtin());
    let in_sync = match want {
        Some(rules) => state.chain_present && state.chain_rules == rules && state.jump_kept,
        None => !state.chain_present,
    } && state.stale.is_empty();
    if in_sync {
        return None;
    }

    let mut out = format!("*{}\n", table.name());
    if want.is_some() || state.chain_present {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for rule in &state.stale {
        out.push_str(&format!("-D {builtin} {rule}\n"));
    }
    match want {
        Some(rules) => {
            for rule in rules {
                out.push_str(&format!("-A {chain} {rule}\n"));
            }
            if !state.jump_kept {
                out.push_str(&format!("-A {builtin} {}\n", jump_rule(table)));
            }
        }
        None => {
            if state.chain_present {
                out.push_str(&format!("-X {chain}\n"));
            }
        }
    }
    out.push_str("COMMIT\n");
    Some(out)
}
