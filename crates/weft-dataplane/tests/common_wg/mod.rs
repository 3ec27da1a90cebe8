//! Helpers of the WireGuard tests: named network namespaces (always
//! deleted), a "node" thread living in one with its own tokio runtime, a
//! veth underlay between two nodes, and `wg` output parsing that never
//! prints a private key.
//!
//! Why named namespaces (`ip netns add`) rather than `unshare` on a thread:
//! the tests run other programs in them (`wg`, `ping`, `wireguard-go`,
//! `iperf3`) through `ip netns exec`. Each name carries the test process's
//! pid, so leftovers of a crashed run are recognised and removed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use weft_core::wg_key::WgKey;
use weft_dataplane::netlink::{Netlink, RouteSpec, Scope};
use weft_dataplane::wireguard::{PrivateKey, WgDevice, WgDeviceSpec, WgPeerSpec};

const PREFIX: &str = "weftwg-";

/// A failure saying how to run these tests unless run as root: a test that cannot
/// run must not pass.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces): run it as root (CI does: scripts/test.sh), or skip these tests visibly with `cargo nextest run --workspace --profile unprivileged`"
    );
    remove_leftovers();
}

/// Deletes namespaces of earlier runs whose process is gone.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A short name unique in this run, for devices (at most 15 bytes, and the
/// UAPI socket directory is shared by every namespace).
pub fn unique_dev(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("wt{}{tag}{n}", std::process::id() % 100_000)
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> anyhow::Result<Netns> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{tag}{n}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a program in the namespace; its stdout, or an error with its
    /// stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Like `exec`, but returns the raw output whatever the exit status.
    pub fn output(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()?)
    }

    /// Starts a long-running program in the namespace.
    pub fn spawn(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ChildGuard> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(ChildGuard(child))
    }

    /// Debian's wireguard-go as device `name`, in the foreground so that
    /// the guard's kill stops it; returns once its UAPI socket is there.
    pub fn spawn_wireguard_go(&self, name: &str) -> anyhow::Result<ChildGuard> {
        let child = self.spawn(
            "wireguard-go",
            &["-f", name],
            &[("WG_PROCESS_FOREGROUND", "1")],
        )?;
        let socket =
            Path::new(weft_dataplane::wireguard::DEFAULT_UAPI_DIR).join(format!("{name}.sock"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            ensure!(Instant::now() < deadline, "wireguard-go did not start");
            // Poll interval: the socket's appearance has no notification.
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process stopped (by its pid) on drop: SIGTERM, so that it can
/// clean up (wireguard-go removes its socket), then SIGKILL after a second.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a program; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    ensure!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A simulated node: a namespace and a thread in it running a tokio
/// runtime until dropped. Futures given to [`Node::run`] execute on that
/// thread, so sockets and devices they create land in the namespace.
pub struct Node {
    pub ns: Netns,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// A node whose runtime is current-thread (as in most tests) or
    /// multi-thread with two workers (as in the agent).
    pub fn new(tag: &str, multi_thread: bool) -> anyhow::Result<Node> {
        let ns = Netns::new(tag)?;
        let path = format!("/run/netns/{}", ns.name);
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = (|| -> anyhow::Result<tokio::runtime::Runtime> {
                weft_dataplane::netns::enter(&weft_dataplane::netns::Netns::At(path.into()))?;
                let mut builder = if multi_thread {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(2);
                    b
                } else {
                    tokio::runtime::Builder::new_current_thread()
                };
                Ok(builder.enable_all().build()?)
            })();
            match started {
                Ok(runtime) => {
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                }
                Err(e) => {
                    let _ = handle_tx.send(Err(e));
                }
            }
        });
        let handle = handle_rx.recv()??;
        Ok(Node {
            ns,
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the node's runtime and waits for its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = anyhow::Result<T>> + Send + 'static,
    ) -> anyhow::Result<T> {
        futures::executor::block_on(self.handle.spawn(f))?
    }

    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        self.ns.exec(program, args)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Joins `a` and `b` by a veth pair `ul0`: a is 192.0.2.1/24, b 192.0.2.2/24.
pub fn underlay(a: &Node, b: &Node) -> anyhow::Result<()> {
    a.exec(
        "ip",
        &[
            "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", &b.ns.name,
        ],
    )?;
    for (node, addr) in [(a, "192.0.2.1/24"), (b, "192.0.2.2/24")] {
        node.exec("ip", &["addr", "add", addr, "dev", "ul0"])?;
        node.exec("ip", &["link", "set", "ul0", "up"])?;
    }
    Ok(())
}

/// Node `n`'s subnet in the flannel style: 10.244.n.0/24.
pub fn subnet(n: u8) -> String {
    format!("10.244.{n}.0/24")
}

/// What flannel does to a wireguard device after creating it, through the
/// netlink layer: `10.244.n.0/32` on it, up, the whole network routed to it.
pub async fn address_and_route(dev: &WgDevice, n: u8) -> anyhow::Result<()> {
    let nl = Netlink::connect()?;
    nl.add_address(dev.index(), format!("10.244.{n}.0/32").parse()?)
        .await?;
    nl.set_link_up(dev.index()).await?;
    // flannel: `RouteReplace{dst <Network>, dev flannel-wg, scope link}`.
    let route = RouteSpec::unicast("10.244.0.0/16".parse()?)
        .dev(dev.index())
        .scope(Scope::Link);
    nl.replace_route(&route).await?;
    Ok(())
}

/// A device spec with a fresh key.
pub fn spec(name: &str, port: u16) -> WgDeviceSpec {
    WgDeviceSpec {
        name: name.to_string(),
        listen_port: port,
        mtu: 1420,
        private_key: PrivateKey::generate(),
    }
}

/// The peer spec under which node `n` (underlay 192.0.2.n) is known.
pub fn peer(key: WgKey, n: u8, port: u16, psk: Option<WgKey>) -> WgPeerSpec {
    WgPeerSpec {
        public_key: key,
        endpoint: format!("192.0.2.{n}:{port}").parse().unwrap(),
        allowed_ips: vec![subnet(n).parse().unwrap()],
        psk,
        keepalive: None,
    }
}

/// One peer line of `wg show <dev> dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPeer {
    pub public_key: String,
    /// "(none)" or the base64 key. Never printed by these tests.
    pub has_psk: bool,
    pub endpoint: String,
    pub allowed_ips: Vec<String>,
    pub latest_handshake: u64,
    pub rx: u64,
    pub tx: u64,
    pub keepalive: String,
}

/// `wg show <dev> dump`, parsed: the device's public key and listen port,
/// and its peers. The first line (which holds the private key) is dropped
/// before anything could print it.
pub fn wg_dump(ns: &Netns, dev: &str) -> anyhow::Result<(String, u16, Vec<DumpPeer>)> {
    let out = ns.output("wg", &["show", dev, "dump"])?;
    if !out.status.success() {
        bail!(
            "wg show {dev} dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout).context("wg output")?;
    let mut lines = text.lines();
    let device: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    ensure!(
        device.len() == 4,
        "unexpected device line in wg dump ({} fields)",
        device.len()
    );
    let public_key = device[1].to_string();
    let port = device[2].parse()?;
    let mut peers = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        ensure!(
            f.len() == 8,
            "unexpected peer line in wg dump: {} fields",
            f.len()
        );
        let mut allowed: Vec<String> = f[3]
            .split(',')
            .filter(|s| *s != "(none)")
            .map(String::from)
            .collect();
        allowed.sort();
        peers.push(DumpPeer {
            public_key: f[0].to_string(),
            has_psk: f[1] != "(none)",
            endpoint: f[2].to_string(),
            allowed_ips: allowed,
            latest_handshake: f[4].parse()?,
            rx: f[5].parse()?,
            tx: f[6].parse()?,
            keepalive: f[7].to_string(),
        });
    }
    peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    Ok((public_key, port, peers))
}

/// Pings `dst` from `ns` until one answer comes or `within` passes.
pub fn ping_ok(ns: &Netns, dst: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let ok = ns
            .output("ping", &["-c", "1", "-W", "1", dst])
            .is_ok_and(|o| o.status.success());
        if ok {
            return true;
        }
    }
    false
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Opens a weft device on `node` as node `n` of the lab (address
/// 10.244.n.0/32, the network routed to it) with `peers`.
pub fn weft_device(
    node: &Node,
    spec: WgDeviceSpec,
    n: u8,
    peers: Vec<WgPeerSpec>,
) -> anyhow::Result<std::sync::Arc<WgDevice>> {
    node.run(async move {
        let dev = WgDevice::open(
            &spec,
            weft_dataplane::wireguard::PathPolicy::Auto,
            Path::new(weft_dataplane::wireguard::DEFAULT_UAPI_DIR),
        )
        .await?;
        address_and_route(&dev, n).await?;
        dev.apply_peers(&peers).await?;
        Ok(std::sync::Arc::new(dev))
    })
}

/// Closes a device opened by [`weft_device`] on its node.
pub fn close(node: &Node, dev: std::sync::Arc<WgDevice>) -> anyhow::Result<()> {
    let dev = std::sync::Arc::into_inner(dev).context("the device is still shared")?;
    node.run(async move { Ok(dev.close().await?) })
}

/// Sends `len` bytes over TCP from `from` to an echo server on `to`'s
/// `addr:port` and checks they come back, within ten seconds.
pub fn tcp_echo(from: &Node, to: &Node, addr: &str, port: u16, len: usize) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bind = format!("{addr}:{port}");
    let listener = to.run(async move { Ok(tokio::net::TcpListener::bind(&bind).await?) })?;
    to.run(async move {
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        Ok(())
    })?;
    let target = format!("{addr}:{port}");
    from.run(async move {
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(&target).await?;
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (mut r, mut w) = s.split();
            let send = async {
                w.write_all(&data).await?;
                w.shutdown().await
            };
            let mut back = Vec::with_capacity(len);
            let (sent, got) = tokio::join!(send, r.read_to_end(&mut back));
            sent?;
            got?;
            anyhow::ensure!(
                back == data,
                "echo differs ({} of {len} bytes back)",
                back.len()
            );
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .context("TCP echo timed out")?
    })
}

/// A key pair from `wg genkey`/`wg pubkey`: the private key goes straight
/// into a 0600 file, never to the output.
pub fn wg_keypair(dir: &Path, file: &str) -> (std::path::PathBuf, WgKey) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let private = Command::new("wg").arg("genkey").output().unwrap().stdout;
    let path = dir.join(file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(&private).unwrap();
    let mut pubkey = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    pubkey.stdin.take().unwrap().write_all(&private).unwrap();
    let out = pubkey.wait_with_output().unwrap();
    let public = WgKey::from_base64(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    (path, public)
}
