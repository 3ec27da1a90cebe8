//! The nftables backend: tables `ip flannel-ipv4` / `ip6 flannel-ipv6`,
//! each replaced wholesale by one `nft -f -` transaction (see [`render_nft_script`])
//! and read back with `nft -j list table …`.

mod readback;
mod render;

pub use render::{V4_TABLE, V6_TABLE, render_nft_script, table_of};

use weft_core::Family;

use super::drift::{Drift, Problem};
use super::error::ToolKind;
use super::exec::{Tools, run};
use super::{RulesError, RulesSpec};
use readback::{InstalledChain, diff, parse_table};
use render::chains;

/// A throwaway base chain with `masquerade fully-random`, only ever run
/// with `nft -c` (checked by the kernel, never committed) — the same probe
/// flannel uses, in a table of its own so it cannot touch ours.
const FULLY_RANDOM_PROBE: &str = "table ip weft-probe {\n\tchain probe {\n\t\t\
    type nat hook postrouting priority srcnat; policy accept;\n\t\t\
    ip saddr != 127.0.0.1 masquerade fully-random\n\t}\n}\n";

/// Whether the kernel accepts `masquerade fully-random`. A missing `nft`
/// is an error; a refused probe means "no".
pub(crate) async fn probe(tools: &Tools) -> Result<bool, RulesError> {
    match run(
        ToolKind::Nft,
        &tools.nft,
        &["-c", "-f", "-"],
        Some(FULLY_RANDOM_PROBE),
        "fully-random probe",
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(RulesError::Failed { stderr, .. }) => {
            tracing::debug!(%stderr, "nft refused the fully-random probe");
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

fn target(family: Family) -> String {
    let (proto, name) = table_of(family);
    format!("nftables table {proto} {name}")
}

/// The installed table, or `None` when it does not exist.
async fn read(tools: &Tools, family: Family) -> Result<Option<Vec<InstalledChain>>, RulesError> {
    let (proto, name) = table_of(family);
    let args = ["-j", "list", "table", proto, name];
    match run(ToolKind::Nft, &tools.nft, &args, None, &target(family)).await {
        Ok(out) => parse_table(&out)
            .map(Some)
            .map_err(|detail| RulesError::Parse {
                command: format!("{} {}", tools.nft.display(), args.join(" ")),
                target: target(family),
                detail,
            }),
        Err(RulesError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// The differences for one family, or `None` when the family is unused and
/// its table cannot even be read (nothing of ours can be there).
async fn family_drift(
    tools: &Tools,
    spec: &RulesSpec,
    family: Family,
) -> Result<Option<Vec<Problem>>, RulesError> {
    let want = chains(spec, family);
    match read(tools, family).await {
        Ok(installed) => Ok(Some(diff(family, &want, installed.as_deref()))),
        Err(err) if want.is_empty() => {
            tracing::debug!(%family, error = %err, "skipping unreadable table of an unused family");
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Converges both families' tables to `spec` (already effective). A table
/// that already matches is not rewritten, so a periodic apply does not
/// churn.
pub(crate) async fn apply(
    tools: &Tools,
    spec: &RulesSpec,
    fault: Option<&str>,
) -> Result<(), RulesError> {
    for (family, drift) in drifts(tools, spec).await? {
        match drift {
            Some(problems) if !problems.is_empty() => {}
            _ => continue,
        }
        let script = inject(render_nft_script(spec, family), fault);
        run(
            ToolKind::Nft,
            &tools.nft,
            &["-f", "-"],
            Some(&script),
            &target(family),
        )
        .await?;
        tracing::info!(%family, table = table_of(family).1, "nftables table written");
    }
    Ok(())
}

/// Both families' differences, read at once (two `nft list` runs side by
/// side: a node's start-up waits for them).
async fn drifts(
    tools: &Tools,
    spec: &RulesSpec,
) -> Result<Vec<(Family, Option<Vec<Problem>>)>, RulesError> {
    let reads = Family::ALL
        .map(|family| async move { Ok((family, family_drift(tools, spec, family).await?)) });
    futures::future::join_all(reads).await.into_iter().collect()
}

/// Compares both families' tables with `spec`.
pub(crate) async fn check(tools: &Tools, spec: &RulesSpec) -> Result<Drift, RulesError> {
    let mut problems = Vec::new();
    for (_, drift) in drifts(tools, spec).await? {
        problems.extend(drift.unwrap_or_default());
    }
    Ok(Drift { problems })
}

/// Deletes both tables (each in its own transaction, so a host without
/// IPv6 support still loses the IPv4 one).
pub(crate) async fn cleanup(tools: &Tools) -> Result<(), RulesError> {
    let nothing = RulesSpec {
        families: Vec::new(),
        masquerade: false,
        fully_random: false,
        forward: false,
    };
    apply(tools, &nothing, None).await
}

/// Test-only fault injection: an extra line at the end of the table body
/// (or of the script), so a test can prove a failing transaction leaves the
/// previous table in place.
fn inject(script: String, fault: Option<&str>) -> String {
    match (fault, script.strip_suffix("}\n")) {
        (Some(line), Some(body)) => format!("{body}\t{line}\n}}\n"),
        (Some(line), None) => format!("{script}{line}\n"),
        (None, _) => script,
    }
}
