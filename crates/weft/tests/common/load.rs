//! Traffic kept flowing across a fault: pings every 10 ms and a TCP stream
//! between node1-pod1 and node2-pod1, counted on both ends, so a fault
//! test can say that nothing was lost.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::{TestLab, icmp_echos_received, wait_for_pings};

/// What crossed between node1-pod1 and node2-pod1 during a fault.
pub struct Load {
    pub sent: u64,
    pub received: u64,
    /// The TCP stream ran its whole length without an error.
    pub stream_ok: bool,
    pub stream_report: String,
}

impl Load {
    pub fn assert_nothing_lost(&self, fault: &str) {
        println!(
            "{fault}: {}/{} pings answered, TCP stream {}",
            self.received,
            self.sent,
            if self.stream_ok { "intact" } else { "broken" }
        );
        assert_eq!(self.sent, self.received, "pings lost: {fault}");
        assert!(
            self.stream_ok,
            "the TCP stream broke: {fault}\n{}",
            self.stream_report
        );
    }
}

/// For `secs`, pings every 10 ms and streams TCP (iperf3, 20 Mbit/s) from
/// node1-pod1 to node2-pod1 while `during` runs; both are under way before
/// `during` starts. The ping runs to a deadline rather than a count:
/// iputils' 10 ms interval is ~17 ms on some kernels, and a deadline still
/// ends on an answered probe.
pub fn load_while(lab: &TestLab, secs: u64, during: impl FnOnce()) -> Load {
    load_at_while(lab, secs, "20M", during)
}

/// [`load_while`] with the TCP stream at `bitrate` (iperf3's `-b`).
pub fn load_at_while(lab: &TestLab, secs: u64, bitrate: &str, during: impl FnOnce()) -> Load {
    let target = lab.pod_ip("node2-pod1");
    let secs = secs.to_string();
    let server = super::iperf3_server(lab, "node2-pod1");
    let echos = icmp_echos_received(lab, "node2-pod1");
    let (ping, stream) = std::thread::scope(|s| {
        let ping = s.spawn(|| {
            lab.run(
                "node1-pod1",
                &["ping", "-q", "-i", "0.01", "-W", "1", "-w", &secs, &target],
            )
        });
        let stream = s.spawn(|| {
            lab.run(
                "node1-pod1",
                &["iperf3", "-c", &target, "-t", &secs, "-b", bitrate],
            )
        });
        wait_for_pings(lab, "node2-pod1", echos);
        during();
        (ping.join().unwrap(), stream.join().unwrap())
    });
    drop(server);
    let summary = super::ping::ping_summary(&ping);
    Load {
        sent: summary.sent,
        received: summary.received,
        stream_ok: stream.status.success(),
        stream_report: format!(
            "{}{}",
            String::from_utf8_lossy(&stream.stdout),
            String::from_utf8_lossy(&stream.stderr)
        ),
    }
}
