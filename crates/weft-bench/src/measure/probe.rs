//! Reading a running agent from outside: its memory and CPU time from
//! `/proc`, and its `/metrics` and `/readyz` over TCP inside its node.
//!
//! Why from outside: the figures must describe weftd as deployed, not a
//! build instrumented for the benchmark.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// Memory of a process, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: everything resident.
    pub rss: u64,
    /// `VmHWM`: the peak of `VmRSS`.
    pub peak: u64,
    /// `RssAnon`: the process's own memory. The rest of `VmRSS` is pages of
    /// the binary and libraries: shared, clean and reclaimable.
    pub anon: u64,
}

/// [`Memory`] of `pid`, from `/proc/<pid>/status`.
pub fn memory_kib(pid: i32) -> Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    match (field("VmRSS:"), field("VmHWM:"), field("RssAnon:")) {
        (Some(rss), Some(peak), Some(anon)) => Ok(Memory { rss, peak, anon }),
        _ => bail!("/proc/{pid}/status has no VmRSS, VmHWM or RssAnon"),
    }
}

/// CPU time `pid` has used so far, in nanoseconds: the sum of every
/// thread's `schedstat` run time.
///
/// Why not `/proc/<pid>/stat`: utime and stime count 10 ms ticks, too
/// coarse for a 1 ms reconcile pass. Threads that exited are not in
/// `task/` any more; weftd's threads (tokio workers) live as long as the
/// process, so nothing is lost over a measurement window.
pub fn cpu_ns(pid: i32) -> Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let path = entry?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // the thread ended between listing and reading
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// A GET on `addr` (HTTP/1.0 semantics, `Connection: close`); call it on
/// a thread inside the agent's namespace. Returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    http_request(addr, "GET", path, None, timeout)
}

/// One request on `addr` with an optional JSON body, `Connection: close`;
/// call it on a thread inside the server's namespace. Returns (status,
/// body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let body = json.unwrap_or_default();
    let kind = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\n{kind}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let r = weft_lab::http::parse_response(&raw).map_err(anyhow::Error::msg)?;
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

/// The reconcile counters of weftd's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PassCounters {
    pub passes: f64,
    /// Sum of pass durations, seconds.
    pub seconds: f64,
}

/// Reads `weft_reconcile_passes_total` and the duration histogram's sum.
pub fn pass_counters(metrics: &str) -> Result<PassCounters> {
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    };
    match (
        value("weft_reconcile_passes_total"),
        value("weft_reconcile_duration_seconds_sum"),
    ) {
        (Some(passes), Some(seconds)) => Ok(PassCounters { passes, seconds }),
        _ => bail!("/metrics lacks weft_reconcile_passes_total or the duration sum"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let m = memory_kib(me).unwrap();
        assert!(m.rss > 0 && m.peak >= m.rss && m.anon <= m.rss);
        assert!(cpu_ns(me).unwrap() > 0);
    }

    #[test]
    fn parses_metrics() {
        let text = "# TYPE weft_reconcile_passes counter\nweft_reconcile_passes_total 12\n\
                    weft_reconcile_duration_seconds_sum 0.5\nweft_reconcile_duration_seconds_count 12\n";
        let c = pass_counters(text).unwrap();
        assert_eq!((c.passes, c.seconds), (12.0, 0.5));
        assert!(pass_counters("nothing").is_err());
    }
}
