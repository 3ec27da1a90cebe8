//! The pod matrix: every pod pings and opens a TCP connection to every
//! other pod, same-node pairs included, once per address family both pods
//! have.
//!
//! ICMP uses the system's `ping` run inside the source pod's namespace.
//! TCP is native: each pod gets a tiny listener (a thread inside the pod's
//! namespace, bound to the pod's address on a kernel-chosen port, greeting
//! and closing every connection), and a connect from a thread inside the
//! source pod's namespace must read that greeting. Probes run with bounded
//! parallelism, so a small lab checks in well under the probe timeout.

use std::collections::{HashMap, VecDeque};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::Serialize;
use weft_core::Family;

use crate::LabError;
use crate::netns::in_netns;
use crate::state::PodRecord;
use crate::store::find_tool;

/// What the TCP listeners send, so a probe knows it reached the lab's
/// listener and not something else on that address.
const GREETING: &[u8] = b"weft-lab\n";

/// How to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// How many probes run at once.
    pub parallelism: usize,
    /// How long one probe may wait for an answer.
    pub timeout: Duration,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            parallelism: 16,
            timeout: Duration::from_secs(2),
        }
    }
}

/// The matrix; its JSON is `weft lab check --json`'s contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub pairs: Vec<PairResult>,
}

/// One source, destination and family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairResult {
    pub from: String,
    pub to: String,
    pub family: Family,
    pub icmp: bool,
    pub tcp: bool,
    /// Why the ICMP probe failed (for people; not in the JSON).
    #[serde(skip)]
    pub icmp_error: Option<String>,
    /// Why the TCP probe failed (for people; not in the JSON).
    #[serde(skip)]
    pub tcp_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Icmp,
    Tcp,
}

struct Job {
    pair: usize,
    probe: Probe,
    from_netns: String,
    target: IpAddr,
    /// The listener's address for TCP, or why there is none.
    listener: Result<SocketAddr, String>,
}

/// Checks every ordered pair of `pods`.
pub fn run(pods: &[PodRecord], options: CheckOptions) -> Result<CheckReport, LabError> {
    let ping = find_tool("ping").ok_or_else(|| {
        LabError::Missing("ping is not installed: install Debian's iputils-ping".to_owned())
    })?;
    let mut pairs = Vec::new();
    for from in pods {
        for to in pods.iter().filter(|p| p.name != from.name) {
            for family in Family::ALL {
                if from.address(family).is_some() && to.address(family).is_some() {
                    pairs.push((from, to, family));
                }
            }
        }
    }
    let listeners = Listeners::start(pods);
    let mut jobs = VecDeque::new();
    for (i, (from, to, family)) in pairs.iter().enumerate() {
        let Some(target) = to.address(*family) else {
            continue;
        };
        for probe in [Probe::Icmp, Probe::Tcp] {
            jobs.push_back(Job {
                pair: i,
                probe,
                from_netns: from.netns.clone(),
                target,
                listener: listeners.addr(&to.name, *family),
            });
        }
    }
    let outcomes = run_jobs(jobs, options, &ping);
    listeners.stop();

    let mut results: Vec<PairResult> = pairs
        .iter()
        .map(|(from, to, family)| PairResult {
            from: from.name.clone(),
            to: to.name.clone(),
            family: *family,
            icmp: false,
            tcp: false,
            icmp_error: None,
            tcp_error: None,
        })
        .collect();
    for (pair, probe, outcome) in outcomes {
        let Some(r) = results.get_mut(pair) else {
            continue;
        };
        match probe {
            Probe::Icmp => (r.icmp, r.icmp_error) = (outcome.is_ok(), outcome.err()),
            Probe::Tcp => (r.tcp, r.tcp_error) = (outcome.is_ok(), outcome.err()),
        }
    }
    let ok = results.iter().all(|r| r.icmp && r.tcp);
    Ok(CheckReport { ok, pairs: results })
}

fn run_jobs(
    jobs: VecDeque<Job>,
    options: CheckOptions,
    ping: &std::path::Path,
) -> Vec<(usize, Probe, Result<(), String>)> {
    let workers = options.parallelism.clamp(1, jobs.len().max(1));
    let queue = Mutex::new(jobs);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = match queue.lock() {
                        Ok(mut q) => q.pop_front(),
                        Err(_) => None,
                    };
                    let Some(job) = job else { break };
                    let outcome =
                        in_netns(&job.from_netns, || Ok(probe(&job, options.timeout, ping)))
                            .unwrap_or_else(|e| Err(e.to_string()));
                    if let Ok(mut r) = results.lock() {
                        r.push((job.pair, job.probe, outcome));
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}

/// One probe, run on a thread inside the source pod's namespace.
fn probe(job: &Job, timeout: Duration, ping: &std::path::Path) -> Result<(), String> {
    match job.probe {
        Probe::Icmp => {
            let wait = timeout.as_secs().max(1).to_string();
            let mut cmd = Command::new(ping);
            if job.target.is_ipv6() {
                cmd.arg("-6");
            }
            let out = cmd
                .args(["-n", "-c", "1", "-W", &wait])
                .arg(job.target.to_string())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run ping: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&out.stdout);
                let err = String::from_utf8_lossy(&out.stderr);
                // "From 192.0.2.254 … Destination Net Unreachable" or
                // "ping: connect: Network is unreachable" say why; a plain
                // loss has only ping's statistics, which say nothing more.
                let why = text
                    .lines()
                    .chain(err.lines())
                    .find(|l| {
                        l.contains("Unreachable")
                            || l.contains("unreachable")
                            || l.starts_with("ping:")
                    })
                    .map(|l| l.trim().to_owned())
                    .unwrap_or_else(|| {
                        format!("no echo reply from {} within {wait} s", job.target)
                    });
                Err(why)
            }
        }
        Probe::Tcp => {
            let addr = job.listener.clone()?;
            let mut stream = TcpStream::connect_timeout(&addr, timeout)
                .map_err(|e| format!("connect to {addr}: {e}"))?;
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| format!("set timeout: {e}"))?;
            let mut buf = [0u8; 16];
            let mut got = Vec::new();
            while got.len() < GREETING.len() {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(format!("read from {addr}: {e}")),
                }
            }
            if got == GREETING {
                Ok(())
            } else {
                Err(format!(
                    "{addr} answered {:?}, not the lab's listener",
                    String::from_utf8_lossy(&got)
                ))
            }
        }
    }
}

/// One TCP listener per pod and family, for the duration of a check.
struct Listeners {
    stop: Arc<AtomicBool>,
    addrs: HashMap<(String, Family), Result<SocketAddr, String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Listeners {
    fn start(pods: &[PodRecord]) -> Listeners {
        let stop = Arc::new(AtomicBool::new(false));
        let mut addrs = HashMap::new();
        let mut threads = Vec::new();
        for pod in pods {
            for family in Family::ALL {
                let Some(ip) = pod.address(family) else {
                    continue;
                };
                let (tx, rx) = mpsc::channel();
                let netns = pod.netns.clone();
                let stop = Arc::clone(&stop);
                threads.push(std::thread::spawn(move || listen(&netns, ip, &stop, &tx)));
                let addr = rx
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| Err("the listener did not start".to_owned()));
                addrs.insert((pod.name.clone(), family), addr);
            }
        }
        Listeners {
            stop,
            addrs,
            threads,
        }
    }

    fn addr(&self, pod: &str, family: Family) -> Result<SocketAddr, String> {
        self.addrs
            .get(&(pod.to_owned(), family))
            .cloned()
            .unwrap_or_else(|| Err(format!("no listener in {pod}")))
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Body of a listener thread: enter the pod's namespace, bind, report the
/// address, then greet every connection until told to stop.
fn listen(
    netns: &str,
    ip: IpAddr,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Result<SocketAddr, String>>,
) {
    let entered = in_netns(netns, || {
        let listener = TcpListener::bind((ip, 0))
            .map_err(|e| LabError::io(format!("cannot listen on {ip} in {netns}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| LabError::io("local_addr", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| LabError::io("cannot make the listener non-blocking", e))?;
        let _ = tx.send(Ok(addr));
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.write_all(GREETING);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        Ok(())
    });
    if let Err(e) = entered {
        let _ = tx.send(Err(e.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_exactly_the_contract_keys() {
        let report = CheckReport {
            ok: false,
            pairs: vec![PairResult {
                from: "node1-pod1".into(),
                to: "node2-pod1".into(),
                family: Family::V4,
                icmp: true,
                tcp: false,
                icmp_error: None,
                tcp_error: Some("timed out".into()),
            }],
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"ok":false,"pairs":[{"from":"node1-pod1","to":"node2-pod1","family":"ipv4","icmp":true,"tcp":false}]}"#
        );
    }
}
