//! What the ipsec VM tests share: the lab, waiting for tunnels, reading
//! the kernel's policies, measuring gaps in ping output.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weft_core::status::IpsecTunnelView;
use weft_lab::Backend;

use super::common::{TestLab, wait_until};

/// Emulation is slow: a 4096-bit DH (flannel's IKE proposal) takes
/// seconds under TCG.
pub const READY_WITHIN: Duration = Duration::from_secs(120);

pub fn nodes(lab: &TestLab) -> Vec<String> {
    lab.lab().nodes().iter().map(|n| n.name.clone()).collect()
}

pub fn tunnels(lab: &TestLab, node: &str) -> Vec<IpsecTunnelView> {
    lab.lab()
        .agent_status(node)
        .map(|s| s.view.ipsec_tunnels)
        .unwrap_or_default()
}

/// Waits until `node` holds `peers` tunnels, each with an established IKE
/// SA, an installed child SA and ESP SAs both ways in the kernel.
pub fn wait_for_tunnels(lab: &TestLab, node: &str, peers: usize, within: Duration) {
    wait_until(
        within,
        &format!("{node} to hold {peers} established ipsec tunnels"),
        || {
            let t = tunnels(lab, node);
            t.len() == peers
                && t.iter().all(|t| {
                    t.ike_state == "ESTABLISHED"
                        && t.child_state == "INSTALLED"
                        && t.kernel_sas >= 2
                })
        },
    );
}

/// `ip xfrm policy` lines of weft's policies (reqid 11).
pub fn policy_count(lab: &TestLab, node: &str) -> usize {
    lab.ok(node, &["ip", "xfrm", "policy", "list"])
        .matches("proto esp reqid 11 mode tunnel")
        .count()
}

/// Pings `target` from `pod` until one answers.
pub fn wait_for_ping(lab: &TestLab, pod: &str, target: &str, within: Duration) {
    wait_until(within, &format!("{pod} to reach {target}"), || {
        lab.run(pod, &["ping", "-c", "1", "-W", "1", target])
            .status
            .success()
    });
}

/// The lab: three nodes, kernel ESP, flannel's defaults.
pub fn ipsec_lab(name: &str) -> TestLab {
    TestLab::up_with(name, Backend::Ipsec, |spec| {
        spec.ready_timeout = READY_WITHIN;
        spec.nodes = 3;
    })
}

/// A timestamped ping (`ping -D`, 5 per second) from network namespace
/// `from` to `to`, running until [`gap_of`].
pub fn start_pinging(from: &str, to: &str) -> Child {
    Command::new("ip")
        .args([
            "netns", "exec", from, "ping", "-D", "-i", "0.2", "-W", "1", to,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Stops a [`start_pinging`] ping (SIGINT); the longest time between two
/// of its answers, and what it printed.
pub fn gap_of(pinger: Child) -> (Duration, String) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pinger.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (longest_gap(&text), text)
}

/// The longest time between two answered pings in `ping -D` output.
pub fn longest_gap(text: &str) -> Duration {
    let times: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    times
        .windows(2)
        .map(|w| Duration::from_secs_f64((w[1] - w[0]).max(0.0)))
        .max()
        .unwrap_or(Duration::MAX)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
