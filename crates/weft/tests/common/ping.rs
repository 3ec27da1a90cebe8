//! Pings from pods and what their output says, shared by the tests that
//! count losses across a disturbance (a restart, a rotation, a failover).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{TestLab, wait_until};

/// ping's closing summary: "N packets transmitted, M received, ... time Tms".
pub struct PingSummary {
    pub sent: u64,
    pub received: u64,
    /// The whole run, as ping reports it: the real spacing of the probes is
    /// this over `sent` (asked for 10 ms, often ~17 ms).
    pub total_ms: Option<u64>,
}

impl PingSummary {
    pub fn lost(&self) -> u64 {
        self.sent - self.received
    }
}

/// Reads the summary from a finished `ping -q` (or plain `ping`).
pub fn ping_summary(out: &std::process::Output) -> PingSummary {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {text}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(2)
        .map(|w| w.parse().unwrap())
        .collect();
    let total_ms = line
        .rsplit("time ")
        .next()
        .and_then(|t| t.trim_end_matches("ms").trim().parse().ok());
    PingSummary {
        sent: nums[0],
        received: nums[1],
        total_ms,
    }
}

/// 10 ms pings from a pod, running until [`Pinger::stop`]: a rotation
/// under emulation takes longer than any fixed count can be sure to
/// cover. Every answer is read as it comes (a full pipe would stall
/// ping).
pub struct Pinger {
    child: std::process::Child,
    answered: Arc<AtomicU64>,
    reader: std::thread::JoinHandle<Vec<u64>>,
}

impl Pinger {
    pub fn start(lab: &TestLab, from: &str, target: &str) -> Pinger {
        let target = target.to_owned();
        let mut child = lab
            .lab()
            .in_netns(from, move || {
                Command::new("ping")
                    .args(["-i", "0.01", "-W", "2", &target])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| weft_lab::LabError::io("ping", e))
            })
            .unwrap();
        let out = child.stdout.take().unwrap();
        let answered = Arc::new(AtomicU64::new(0));
        let reader = {
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                    let line = line.unwrap_or_default();
                    if !line.contains("bytes from") || line.contains("DUP!") {
                        continue;
                    }
                    let seq = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("icmp_seq=")?.parse().ok());
                    if let Some(seq) = seq {
                        seqs.push(seq);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seqs
            })
        };
        Pinger {
            child,
            answered,
            reader,
        }
    }

    /// Answers so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits up to `limit` for `more` answers than so far, failing the test
    /// with `what` otherwise.
    pub fn wait_for_more(&self, more: u64, limit: Duration, what: &str) {
        let answered = self.answered();
        wait_until(limit, what, || self.answered() > answered + more);
    }

    /// Stops ping (SIGINT) and returns (sent, lost) up to the last answer:
    /// requests still in flight when it stops are not counted as lost.
    pub fn stop(mut self) -> (u64, u64) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
        self.child.wait().unwrap();
        let mut seqs = self.reader.join().unwrap();
        seqs.sort_unstable();
        seqs.dedup();
        let last = seqs.last().copied().unwrap_or(0);
        (last, last - seqs.len() as u64)
    }
}
