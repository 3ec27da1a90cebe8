//! The iptables backend: `FLANNEL-POSTRTG` in nat and `FLANNEL-FWD` in
//! filter, per family, read with `iptables-save -t <table>` and written with
//! one `iptables-restore --noflush -w` commit per table (see
//! [`render_iptables_restore`] for the layout and why a commit never leaves
//! a gap).
//!
//! ## FLANNEL-POSTRTG order: current flannel (v0.28.x), not v0.20.2
//!
//! The golden capture (`iptables-vxlan-ipmasq.txt`) comes from flannel
//! v0.20.2, whose chain reads
//!
//! ```text
//! mark 0x4000/0x4000 RETURN
//! -s N -d N RETURN
//! -s N ! -d 224.0.0.0/4 MASQUERADE
//! ! -s N -d S RETURN
//! ! -s N -d N MASQUERADE
//! ```
//!
//! Current flannel (flannel-compat §6.1) writes
//!
//! ```text
//! mark 0x4000/0x4000 RETURN
//! -s S -d N RETURN
//! -s N -d S RETURN
//! ! -s N -d S RETURN
//! -s N ! -d 224.0.0.0/4 MASQUERADE
//! ! -s N -d N MASQUERADE
//! ```
//!
//! weft follows the current order because that is what nodes run today, so a
//! node moving from flannel to weft finds its chain already right and
//! `check` reports no drift. For the traffic a node really sees the two
//! agree: pod→pod (local source or local destination) returns, outside→local
//! pod returns, pod→outside and host→remote pod masquerade. They differ only
//! for transit traffic between two *other* nodes' pods routed through this
//! node (source and destination in N, neither in S): v0.20.2 returns early,
//! the current order masquerades it. `FLANNEL-FWD` and both jump rules
//! are byte-identical to the golden in either version.

mod render;
mod save;

pub use render::{
    FWD_CHAIN, KUBE_PROXY_MARK, POSTRTG_CHAIN, Table, chain_rules, jump_rule,
    render_iptables_restore, wanted,
};

use std::path::Path;

use weft_core::Family;

use super::drift::{Drift, Problem};
use super::error::ToolKind;
use super::exec::{Tools, run};
use super::{RulesError, RulesSpec};
use save::{SavedTable, analyse, diff, parse_save};

/// What the installed iptables supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// `MASQUERADE --random-fully` (iptables ≥ 1.6.2, as flannel's
    /// go-iptables `HasRandomFully` decides).
    pub(crate) random_fully: bool,
    /// `iptables-restore -w` (also ≥ 1.6.2; older ones reject the flag).
    pub(crate) restore_wait: bool,
}

/// Learns the iptables version from `iptables --version`.
pub(crate) async fn probe(tools: &Tools) -> Result<Caps, RulesError> {
    let out = run(
        ToolKind::Iptables,
        &tools.iptables,
        &["--version"],
        None,
        "version check",
    )
    .await?;
    let version = parse_version(&out).ok_or_else(|| RulesError::Parse {
        command: format!("{} --version", tools.iptables.display()),
        target: "version check".into(),
        detail: format!("no version number in {:?}", out.trim()),
    })?;
    let modern = version >= (1, 6, 2);
    Ok(Caps {
        random_fully: modern,
        restore_wait: modern,
    })
}

/// `iptables v1.8.9 (nf_tables)` → (1, 8, 9).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = word.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn target(family: Family, table: Table) -> String {
    format!("{family} {} table", table.name())
}

fn tools_for(tools: &Tools, family: Family) -> (&Path, &Path) {
    match family {
        Family::V4 => (&tools.iptables_save, &tools.iptables_restore),
        Family::V6 => (&tools.ip6tables_save, &tools.ip6tables_restore),
    }
}

async fn read(tools: &Tools, family: Family, table: Table) -> Result<SavedTable, RulesError> {
    let (save, _) = tools_for(tools, family);
    let out = run(
        ToolKind::Iptables,
        save,
        &["-t", table.name()],
        None,
        &target(family, table),
    )
    .await?;
    Ok(parse_save(&out, table.name()))
}

async fn write(
    tools: &Tools,
    caps: Caps,
    family: Family,
    table: Table,
    input: &str,
) -> Result<(), RulesError> {
    let (_, restore) = tools_for(tools, family);
    let args: &[&str] = if caps.restore_wait {
        &["--noflush", "-w"]
    } else {
        &["--noflush"]
    };
    run(
        ToolKind::Iptables,
        restore,
        args,
        Some(input),
        &target(family, table),
    )
    .await?;
    Ok(())
}

/// Reads one table; a family the spec does not use may be unreadable
/// (ip6tables missing, IPv6 disabled: flannel #2145) and is then skipped,
/// since there is nothing of ours to converge there.
async fn read_for(
    tools: &Tools,
    family: Family,
    table: Table,
    wanted: bool,
) -> Result<Option<SavedTable>, RulesError> {
    match read(tools, family, table).await {
        Ok(saved) => Ok(Some(saved)),
        Err(err) if !wanted => {
            tracing::debug!(%family, table = table.name(), error = %err, "skipping unreadable table of an unused family");
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Every table of both families, read at once (four `iptables-save` runs
/// side by side: a node's start-up waits for them), each with what `spec`
/// wants of it; unreadable tables of unused families are left out.
async fn read_all(
    tools: &Tools,
    spec: &RulesSpec,
) -> Result<Vec<(Family, Table, Option<Vec<String>>, SavedTable)>, RulesError> {
    let reads = Family::ALL.into_iter().flat_map(|family| {
        Table::ALL.into_iter().map(move |table| async move {
            let want = wanted(spec, family, table);
            let saved = read_for(tools, family, table, want.is_some()).await?;
            Ok::<_, RulesError>(saved.map(|saved| (family, table, want, saved)))
        })
    });
    let read = futures::future::join_all(reads).await;
    read.into_iter().filter_map(Result::transpose).collect()
}

/// Converges every table of both families to `spec` (already effective:
/// `fully_random` only if supported). Tables already right are not written.
pub(crate) async fn apply(
    tools: &Tools,
    caps: Caps,
    spec: &RulesSpec,
    fault: Option<&str>,
) -> Result<(), RulesError> {
    for (family, table, want, saved) in read_all(tools, spec).await? {
        let state = analyse(table, &saved, want.is_some());
        if let Some(input) = render::restore_input(table, want.as_deref(), &state) {
            let input = inject(input, fault);
            write(tools, caps, family, table, &input).await?;
            tracing::info!(%family, table = table.name(), chain = table.chain(), "iptables rules written");
        }
    }
    Ok(())
}

/// Compares every table of both families with `spec`.
pub(crate) async fn check(tools: &Tools, spec: &RulesSpec) -> Result<Drift, RulesError> {
    let mut problems: Vec<Problem> = Vec::new();
    for (family, table, want, saved) in read_all(tools, spec).await? {
        problems.extend(diff(
            family,
            table,
            want.as_deref(),
            &analyse(table, &saved, want.is_some()),
        ));
    }
    Ok(Drift { problems })
}

/// Removes both chains and every flannel-commented rule in POSTROUTING and
/// FORWARD, for both families. flannel's own cleanup deletes the chains only
/// (and looks for FLANNEL-FWD in nat), so the jumps keep the chains alive;
/// weft removes the jumps in the same commit.
pub(crate) async fn cleanup(tools: &Tools, caps: Caps) -> Result<(), RulesError> {
    let nothing = RulesSpec {
        families: Vec::new(),
        masquerade: false,
        fully_random: false,
        forward: false,
    };
    apply(tools, caps, &nothing, None).await
}

/// Test-only fault injection: an extra line just before `COMMIT`, so a
/// test can prove a failing commit leaves the previous rules in place.
fn inject(input: String, fault: Option<&str>) -> String {
    match fault {
        Some(line) => input.replace("COMMIT\n", &format!("{line}\nCOMMIT\n")),
        None => input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("iptables v1.8.9 (nf_tables)\n"),
            Some((1, 8, 9))
        );
        assert_eq!(parse_version("iptables v1.6.1"), Some((1, 6, 1)));
        assert_eq!(parse_version("iptables v1.4"), Some((1, 4, 0)));
        assert_eq!(parse_version("garbage"), None);
    }
}
