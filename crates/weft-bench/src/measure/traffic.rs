//! Traffic between lab namespaces: iperf3 throughput and a TCP
//! request/response loop for latency.
//!
//! Why a request/response loop of our own rather than `ping`: it measures
//! what an application sees (a TCP round trip with Nagle off, through the
//! same conntrack and routes as real traffic), gives every sample (so p50
//! and p99, not ping's mean), and needs no parsing of a tool's output.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use weft_bench::stats::{percentile, us};
use weft_lab::{Lab, LabError};

/// The port of the echo server the latency loop talks to.
pub const ECHO_PORT: u16 = 7777;

/// An `iperf3 -s` in one namespace; killed (by its own pid) on drop.
pub struct IperfServer(Child);

impl IperfServer {
    pub fn start(lab: &Lab, target: &str) -> Result<IperfServer> {
        let child = lab.in_netns(target, || {
            Command::new("iperf3")
                .arg("-s")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| LabError::io("cannot start iperf3 -s (install Debian's iperf3)", e))
        })?;
        Ok(IperfServer(child))
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Throughput from `from` to `to` in Gbit/s (iperf3's receiver side),
/// `streams` parallel TCP streams for `secs` seconds after one second of
/// slow start left out. Retried once: a server still closing the previous
/// test answers "busy".
pub fn iperf(lab: &Lab, from: &str, to: IpAddr, streams: u32, secs: u32) -> Result<f64> {
    let mut last = anyhow!("iperf3 did not run");
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        let argv = [
            "-c".to_owned(),
            to.to_string(),
            "-t".into(),
            secs.to_string(),
            "-O".into(),
            "1".into(),
            "-P".into(),
            streams.to_string(),
            "-J".into(),
        ];
        let out = lab.in_netns(from, || {
            Command::new("iperf3")
                .args(&argv)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| LabError::io("cannot run iperf3", e))
        })?;
        match parse_iperf(&out.stdout) {
            Ok(gbps) => return Ok(gbps),
            Err(e) => last = e.context(format!("iperf3 {from} → {to}")),
        }
    }
    Err(last)
}

fn parse_iperf(json: &[u8]) -> Result<f64> {
    let v: serde_json::Value =
        serde_json::from_slice(json).context("iperf3 -J did not print JSON")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {e}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 1e9)
        .ok_or_else(|| anyhow!("iperf3's JSON has no end.sum_received.bits_per_second"))
}

/// A one-byte echo server listening in a namespace, served by threads of
/// this process (the socket keeps the namespace it was made in).
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(lab: &Lab, target: &str) -> Result<EchoServer> {
        let listener = lab.in_netns(target, || {
            TcpListener::bind(("0.0.0.0", ECHO_PORT))
                .map_err(|e| LabError::io(format!("cannot listen on port {ECHO_PORT}"), e))
        })?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        std::thread::spawn(move || echo(conn));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(EchoServer {
            stop,
            thread: Some(thread),
        })
    }
}

/// Pins the calling thread to one CPU (when there are two or more) and
/// returns the mask it had. Why: with client and server threads free to
/// share a core or not, round trips on a 2-core machine split into two
/// populations (~20 and ~45 µs here) and the median jumps between them
/// from run to run; pinned, every run measures the cross-core case.
fn pin(cpu: usize) -> Option<CpuSet> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return None;
    }
    let before = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let mut set = CpuSet::new();
    set.set(cpu % cores).ok()?;
    sched_setaffinity(Pid::from_raw(0), &set).ok()?;
    Some(before)
}

fn unpin(before: Option<CpuSet>) {
    if let Some(set) = before {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

fn echo(mut conn: TcpStream) {
    pin(1);
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_nodelay(true);
    let mut b = [0u8; 1];
    while conn.read_exact(&mut b).is_ok() {
        if conn.write_all(&b).is_err() {
            break;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until a TCP connection from `from` to the echo server at `to`
/// works (a WireGuard handshake, a route not yet programmed).
pub fn wait_reachable(lab: &Lab, from: &str, to: IpAddr, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if rr_once(lab, from, to).is_ok() {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{to} is not reachable from {from} after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn connect(lab: &Lab, from: &str, to: IpAddr) -> Result<TcpStream> {
    let addr = SocketAddr::new(to, ECHO_PORT);
    let s = lab.in_netns(from, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| LabError::io(format!("cannot connect to {addr}"), e))
    })?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

fn rr_once(lab: &Lab, from: &str, to: IpAddr) -> Result<()> {
    let mut s = connect(lab, from, to)?;
    let mut b = [7u8; 1];
    s.write_all(&b)?;
    s.read_exact(&mut b)?;
    Ok(())
}

/// `count` one-byte round trips on one connection after a warm-up; returns
/// (p50, p99) in microseconds.
pub fn tcp_rr(lab: &Lab, from: &str, to: IpAddr, count: usize) -> Result<(f64, f64)> {
    let mut s = connect(lab, from, to)?;
    let before = pin(0);
    let result = round_trips(&mut s, count);
    unpin(before);
    result
}

fn round_trips(s: &mut TcpStream, count: usize) -> Result<(f64, f64)> {
    let mut b = [1u8; 1];
    for _ in 0..100 {
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        samples.push(us(t.elapsed()));
    }
    match (percentile(&samples, 50.0), percentile(&samples, 99.0)) {
        (Some(p50), Some(p99)) => Ok((p50, p99)),
        _ => bail!("no round trip was timed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf_json() {
        let ok = br#"{"end":{"sum_received":{"bits_per_second":9.5e9}}}"#;
        assert!((parse_iperf(ok).unwrap() - 9.5).abs() < 1e-9);
        assert!(parse_iperf(br#"{"error":"the server is busy"}"#).is_err());
        assert!(parse_iperf(b"nope").is_err());
    }
}
