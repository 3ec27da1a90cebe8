//! Shared fixtures for the end-to-end tests: a lab that is always torn
//! down, commands inside its namespaces, and waiting for conditions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod bulk;
pub mod load;
pub mod ping;
pub mod rotation;
pub mod scenarios;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use weft_lab::{Backend, Lab, LabSpec};

/// A failure saying how to run these tests unless run as root: a test that cannot
/// run must not pass (the `unprivileged` nextest profile skips them
/// visibly instead).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces): run it as root (CI does: scripts/test.sh), or skip these tests visibly with `cargo nextest run --workspace --profile unprivileged`"
    );
}

/// A lab spec's agents with `--ip-masq` and net-conf.json's
/// `"EnableNFTables": true`: flannel's rules as nftables tables.
pub fn nftables_masq(spec: &mut LabSpec) {
    spec.agent_args = vec!["--ip-masq".into()];
    spec.net_conf_options
        .insert("EnableNFTables".into(), serde_json::Value::Bool(true));
}

/// A lab removed when the test ends, pass or fail.
pub struct TestLab(Option<Lab>);

impl TestLab {
    pub fn up(name: &str, backend: Backend, agent_args: &[&str]) -> TestLab {
        Self::up_with(name, backend, |spec| {
            spec.agent_args = agent_args.iter().map(|s| (*s).to_owned()).collect();
        })
    }

    pub fn up_with(name: &str, backend: Backend, tweak: impl FnOnce(&mut LabSpec)) -> TestLab {
        let _ = Lab::down_by_name(name);
        let mut spec = LabSpec::new(name).unwrap();
        spec.backend = backend;
        tweak(&mut spec);
        match Lab::up(&spec) {
            Ok(lab) => TestLab(Some(lab)),
            Err(e) => panic!("lab {name} did not come up: {e}"),
        }
    }

    pub fn adopt(lab: Lab) -> TestLab {
        TestLab(Some(lab))
    }

    pub fn lab(&self) -> &Lab {
        self.0.as_ref().unwrap()
    }

    pub fn lab_mut(&mut self) -> &mut Lab {
        self.0.as_mut().unwrap()
    }

    /// Runs `argv` in `target`'s namespace, capturing its output.
    pub fn run(&self, target: &str, argv: &[&str]) -> Output {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        self.lab()
            .in_netns(target, move || {
                Command::new(&argv[0])
                    .args(&argv[1..])
                    .output()
                    .map_err(|e| weft_lab::LabError::io(format!("running {}", argv[0]), e))
            })
            .unwrap()
    }

    /// Stdout of a command that must succeed.
    pub fn ok(&self, target: &str, argv: &[&str]) -> String {
        let out = succeeded(self.run(target, argv), &format!("{argv:?} in {target}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pod_ip(&self, pod: &str) -> String {
        self.lab().pod(pod).unwrap().addresses[0].addr().to_string()
    }

    pub fn subnet(&self, node: &str) -> String {
        self.lab().node(node).unwrap().subnets[0].to_string()
    }

    /// The matrix must pass, with a readable report if it does not.
    pub fn assert_matrix(&self) {
        let report = self.lab().check().unwrap();
        let failed: Vec<String> = report
            .pairs
            .iter()
            .filter(|p| !(p.icmp && p.tcp))
            .map(|p| {
                format!(
                    "{} -> {} ({}): icmp={} tcp={}",
                    p.from, p.to, p.family, p.icmp, p.tcp
                )
            })
            .collect();
        assert!(report.ok && failed.is_empty(), "pairs failed: {failed:#?}");
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            let _ = lab.down();
        }
    }
}

/// `weft lab exec`: the command sees the node's private /run (where a
/// userspace WireGuard device's control socket lives), as its agent does.
pub fn lab_exec(lab: &TestLab, node: &str, argv: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "lab",
            "exec",
            "--name",
            lab.lab().name().as_str(),
            node,
            "--",
        ])
        .args(argv)
        .output()
        .unwrap()
}

/// Stdout of a `lab_exec` that must succeed.
pub fn lab_exec_ok(lab: &TestLab, node: &str, argv: &[&str]) -> String {
    let out = succeeded(lab_exec(lab, node, argv), &format!("{argv:?} on {node}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `out`, which must be a success: a failure names `what` and shows what the
/// command printed, stdout and stderr.
pub fn succeeded(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` to its end; its output, which must be a success.
pub fn output_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    succeeded(out, &format!("{cmd:?}"))
}

/// A one-shot `iperf3 -s -1` in `pod`, listening when this returns; it is
/// killed when the returned guard drops.
pub fn iperf3_server(lab: &TestLab, pod: &str) -> ChildGuard {
    let child = lab
        .lab()
        .in_netns(pod, || {
            Command::new("iperf3")
                .args(["-s", "-1"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| weft_lab::LabError::io("iperf3 -s", e))
        })
        .unwrap();
    let guard = ChildGuard(child);
    wait_for_listener(lab, pod, 5201);
    guard
}

/// A child process killed and reaped on drop.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens a TCP connection from `pod` to `listen` (an address the underlay
/// namespace holds, outside the cluster) and returns the source address it
/// arrived from: the node's address when masquerading works.
pub fn outside_connection_source(
    lab: &TestLab,
    pod: &str,
    listen: std::net::IpAddr,
) -> std::net::IpAddr {
    use std::io::Read as _;
    let listener = lab
        .lab()
        .in_netns("underlay", || {
            std::net::TcpListener::bind((listen, 0)).map_err(|e| weft_lab::LabError::io("bind", e))
        })
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        let _ = conn.read(&mut buf);
        peer.ip()
    });
    let script = format!("exec 3<>/dev/tcp/{listen}/{port}; printf hello >&3");
    lab.ok(pod, &["bash", "-c", &script]);
    accept.join().unwrap()
}

/// How many times longer than on the host a wait may take: the
/// `WEFT_TEST_PATIENCE` factor, which scripts/vm-test.sh sets for the
/// emulated VM (a resync pass that takes milliseconds here takes seconds
/// there). 1 when unset.
pub fn patience() -> u32 {
    std::env::var("WEFT_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&f| f >= 1)
        .unwrap_or(1)
}

/// Polls `cond` every 50 ms until it holds or `limit` (times
/// [`patience`]) passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let limit = limit * patience();
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a Kubernetes lab's API test server listens, in the store's
/// namespace.
pub const KUBE_API: &str = "192.0.2.250:6443";

/// A request to a Kubernetes lab's API test server, from the store's
/// namespace.
pub fn kube_api(lab: &TestLab, method: &str, path: &str, body: &str) -> (u16, String) {
    http(lab, "store", KUBE_API, method, path, body)
}

/// The Node `name` as the lab's API server holds it.
pub fn node_from_api(lab: &TestLab, name: &str) -> serde_json::Value {
    let (code, body) = kube_api(lab, "GET", &format!("/api/v1/nodes/{name}"), "");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A plain HTTP/1.1 request from inside `target`'s namespace.
pub fn http(
    lab: &TestLab,
    target: &str,
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let netns = lab.lab().netns_of(target).unwrap();
    http_in_netns(&netns, addr, method, path, body)
}

/// GET `path` on a node's health port (8081: `/healthz`, `/readyz`,
/// `/metrics`) inside the network namespace `netns`.
pub fn health_get(netns: &str, path: &str) -> (u16, String) {
    http_in_netns(netns, "127.0.0.1:8081", "GET", path, "")
}

/// A plain HTTP/1.1 request from inside the network namespace `netns`.
pub fn http_in_netns(
    netns: &str,
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let (addr, method, path, body) = (
        addr.to_owned(),
        method.to_owned(),
        path.to_owned(),
        body.to_owned(),
    );
    weft_lab::in_netns(netns, move || {
            let io = |e| weft_lab::LabError::io("http", e);
            let mut s = std::net::TcpStream::connect(&addr).map_err(io)?;
            s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .map_err(io)?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).map_err(io)?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let code = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            let mut body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
            if raw.to_ascii_lowercase().contains("transfer-encoding: chunked") {
                body = dechunk(&body);
            }
            Ok((code, body))
        })
        .unwrap()
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// ICMP echo requests `target`'s namespace has received so far (`InEchos`
/// of its /proc/net/snmp): rising while pings reach it.
pub fn icmp_echos_received(lab: &TestLab, target: &str) -> u64 {
    let snmp = lab.ok(target, &["cat", "/proc/net/snmp"]);
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (icmp.next().unwrap(), icmp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InEchos")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no InEchos in {target}'s /proc/net/snmp:\n{snmp}"))
}

/// Waits until pings started after `baseline` was read (from
/// [`icmp_echos_received`]) are arriving in `target`.
pub fn wait_for_pings(lab: &TestLab, target: &str, baseline: u64) {
    wait_until(
        Duration::from_secs(10),
        &format!("pings to arrive in {target}"),
        || icmp_echos_received(lab, target) > baseline,
    );
}

/// TCP sockets in `target`'s namespace in `state` (as `ss` names it:
/// "listening", "established") on local port `port`.
pub fn tcp_sockets(lab: &TestLab, target: &str, state: &str, port: u16) -> usize {
    let filter = format!("sport = :{port}");
    lab.ok(target, &["ss", "-tnH", "state", state, &filter])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Waits until something listens on TCP `port` in `target`'s namespace
/// (without connecting: a one-shot server such as `iperf3 -1` would take
/// the probe for its client).
pub fn wait_for_listener(lab: &TestLab, target: &str, port: u16) {
    wait_until(
        Duration::from_secs(10),
        &format!("a listener on TCP port {port} in {target}"),
        || tcp_sockets(lab, target, "listening", port) > 0,
    );
}

/// The net-conf.json in the lab's etcd, written to a file in `dir` (for
/// `weft check --net-config`).
pub fn etcd_net_conf(lab: &TestLab, dir: &std::path::Path) -> std::path::PathBuf {
    let conf = lab.ok(
        "store",
        &[
            "etcdctl",
            "--endpoints=http://127.0.0.1:2379",
            "get",
            "/coreos.com/network/config",
            "--print-value-only",
        ],
    );
    let path = dir.join("net-conf.json");
    std::fs::write(&path, conf.trim()).unwrap();
    path
}

/// `weft check --json --net-config CONF ARGS…` on `node`, its report.
pub fn weft_check(
    lab: &TestLab,
    node: &str,
    conf: &std::path::Path,
    args: &[&str],
) -> serde_json::Value {
    let mut argv = vec![
        env!("CARGO_BIN_EXE_weft"),
        "check",
        "--json",
        "--net-config",
        conf.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    let out = lab.run(node, &argv);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The finding called `name` of a `weft check` report.
pub fn finding(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no finding {name}: {report:#}"))
        .clone()
}

/// The one line of `log` that says all of `words`; fails unless exactly one
/// line does.
pub fn one_line<'a>(log: &'a str, words: &[&str]) -> &'a str {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .collect();
    assert_eq!(lines.len(), 1, "not one line saying {words:?}:\n{log}");
    lines[0]
}

/// Fails unless `finding` (of a `weft check` report) is at `level` and its
/// `field` (`seen`, `fix`) says `text`.
pub fn assert_finding(finding: &serde_json::Value, level: &str, field: &str, text: &str) {
    assert_eq!(finding["level"], level, "{finding}");
    assert!(
        finding[field].as_str().is_some_and(|s| s.contains(text)),
        "no {text:?} in the {field} of {finding}"
    );
}

/// Deletes the lease with `subnets` from the lab's local store, as an
/// operator (or the TTL) would, and checks it was there.
pub fn delete_local_lease(lab: &TestLab, subnets: &weft_core::lease::LeaseSubnets) {
    use weft_store::kv::Kv as _;
    let db = lab.lab().name().state_dir().join("leases.db");
    let key = weft_core::etcd_key::lease_key(weft_core::etcd_key::DEFAULT_PREFIX, subnets);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kv = weft_store::local::LocalKv::open(&db).unwrap();
        let entry = kv.get(&key).await.unwrap().expect("the lease");
        assert!(kv.delete(&key, entry.mod_rev).await.unwrap());
    });
}
