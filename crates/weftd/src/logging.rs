//! Logging to stderr, as flanneld's klog does (`logtostderr=true`), so the
//! container runtime and journald capture it unchanged.
//!
//! `-v` keeps its klog meaning (more is louder) mapped onto tracing levels;
//! `RUST_LOG`, when set, gives full control with tracing's filter syntax.

use std::io::IsTerminal;

use anyhow::anyhow;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

use crate::flags::Flags;

/// klog verbosity to tracing level: 0 → info, 1–4 → debug, 5 and up → trace.
/// klog's levels 1–4 are flannel's "more detail" and 5+ its wire dumps.
pub fn level_for_v(v: u32) -> LevelFilter {
    match v {
        0 => LevelFilter::INFO,
        1..=4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The filter to use, and a warning to log once logging works (a bad
/// `RUST_LOG` must not stop the agent, nor be ignored silently).
fn filter_for(v: u32, rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let from_v = || {
        let filter = EnvFilter::default().add_directive(level_for_v(v).into());
        // kube-client logs every failed request at ERROR; the store already
        // reports an outage once, with what it keeps doing meanwhile.
        match "kube_client::client::builder=off".parse() {
            Ok(quiet) if v == 0 => filter.add_directive(quiet),
            _ => filter,
        }
    };
    match rust_log.filter(|value| !value.trim().is_empty()) {
        None => (from_v(), None),
        Some(value) => match EnvFilter::try_new(value) {
            Ok(filter) => (filter, None),
            Err(e) => (
                from_v(),
                Some(format!("ignoring RUST_LOG={value:?} ({e}); using -v={v}")),
            ),
        },
    }
}

/// Installs the global subscriber: stderr, colours only on a terminal (log
/// collectors would store the escape codes), level from `-v` or `RUST_LOG`;
/// `json` gives one JSON object per line (`--log-format json`).
pub fn init(v: u32, json: bool) -> anyhow::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, warning) = filter_for(v, rust_log.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    installed.map_err(|e| anyhow!("cannot install the logger: {e}"))?;
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// Logs the effective flags once, as flanneld's "CLI flags config" line
/// does (the password is a `Secret` and prints as `<redacted>`), and warns
/// about klog flags that have no effect here.
pub fn log_startup(flags: &Flags) {
    tracing::info!("CLI flags config: {flags:?}");
    if let Some(vmodule) = &flags.vmodule {
        tracing::warn!(
            "-vmodule={vmodule} has no effect in weftd (it names Go source files); \
             use RUST_LOG, e.g. RUST_LOG=info,weftd=debug"
        );
    }
    if let Some(at) = &flags.log_backtrace_at {
        tracing::warn!("-log_backtrace_at={at} has no effect in weftd (it names a Go source line)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_maps_onto_levels() {
        assert_eq!(level_for_v(0), LevelFilter::INFO);
        for v in 1..=4 {
            assert_eq!(level_for_v(v), LevelFilter::DEBUG, "v={v}");
        }
        assert_eq!(level_for_v(5), LevelFilter::TRACE);
        assert_eq!(level_for_v(10), LevelFilter::TRACE);
    }

    #[test]
    fn v_sets_the_filter_without_rust_log() {
        let (filter, warning) = filter_for(2, None);
        assert_eq!(filter.to_string(), "debug");
        assert_eq!(warning, None);
        let (filter, _) = filter_for(0, Some("  "));
        let text = filter.to_string();
        assert!(text.contains("info"), "{text}");
        assert!(text.contains("kube_client::client::builder=off"), "{text}");
    }

    #[test]
    fn rust_log_overrides_v() {
        let (filter, warning) = filter_for(0, Some("weftd=trace"));
        assert_eq!(filter.to_string(), "weftd=trace");
        assert_eq!(warning, None);
    }

    #[test]
    fn bad_rust_log_falls_back_to_v_with_a_warning() {
        let (filter, warning) = filter_for(1, Some("weftd=loud"));
        assert_eq!(filter.to_string(), "debug");
        assert!(warning.is_some_and(|w| w.contains("RUST_LOG")));
    }
}

/// An error with its causes, for the one line an operator reads: each
/// cause whose text the line already holds is left out (typed errors keep
/// their cause as a source *and* often quote it in their own message, as
/// the store's "etcd is unreachable: tcp connect error" does).
pub fn chain(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod chain_tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("etcd is unreachable: {detail}")]
    struct Quoting {
        detail: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_quoted_is_said_once_and_a_new_one_is_added() {
        let quoted = Quoting {
            detail: "connection refused".into(),
            source: std::io::Error::other("connection refused"),
        };
        let e = anyhow::Error::from(quoted).context("failed to acquire a lease");
        assert_eq!(
            chain(&e),
            "failed to acquire a lease: etcd is unreachable: connection refused"
        );
        let fresh = anyhow::anyhow!(std::io::Error::other("disk full")).context("cannot write");
        assert_eq!(chain(&fresh), "cannot write: disk full");
    }
}
