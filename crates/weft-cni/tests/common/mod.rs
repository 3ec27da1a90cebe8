//! A throwaway node for the plugin: a network namespace standing for the
//! node, pod namespaces, and private files (subnet.env, the plugin's
//! dataDir, host-local's dataDir) so tests never collide with each other
//! or touch the root namespace.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

/// The binary under test.
pub const FLANNEL: &str = env!("CARGO_BIN_EXE_flannel");
/// Debian's containernetworking-plugins.
pub const PLUGINS: &str = "/usr/lib/cni";

/// An IPv4 node's subnet.env, as the agent writes it.
pub const GOOD_SUBNET_ENV: &str = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

/// The golden dual-stack subnet.env (flannel-golden, `--ip-masq`).
pub const DUAL_STACK_ENV: &str = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\n\
    FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:5::1/64\n\
    FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

/// A failure saying what is missing (root, the reference
/// plugins): a test that cannot run must not pass.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces): run it as root (CI does: scripts/test.sh), or skip these tests visibly with `cargo nextest run --workspace --profile unprivileged`"
    );
    assert!(
        Path::new(PLUGINS).join("bridge").is_file(),
        "{PLUGINS}/bridge is missing: apt-get install -y --no-install-recommends containernetworking-plugins"
    );
}

/// `CNI_PATH`: where the plugin lives (as /opt/cni/bin holds flannel on a
/// node) and the reference plugins.
pub fn cni_path() -> String {
    let dir = Path::new(FLANNEL).parent().unwrap();
    format!("{}:{PLUGINS}", dir.display())
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace, deleted on drop even when the test panics.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "weftcni-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> -j <args>`, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-n", &self.name, "-j"];
        all.extend_from_slice(args);
        let out = ip(&all);
        if out.trim().is_empty() {
            json!([])
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }

    /// The names of the veths in this namespace.
    pub fn veths(&self) -> Vec<String> {
        let links = self.ip_json(&["link", "show", "type", "veth"]);
        links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip`, returning stdout; panics with stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What one plugin run printed.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn success(self) -> Run {
        assert!(
            self.ok,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// The error result, after checking the exit status and the shape.
    pub fn error(&self) -> Value {
        assert!(!self.ok, "plugin succeeded: {}", self.stdout);
        let e = self.json();
        for key in ["cniVersion", "code", "msg", "details"] {
            assert!(e.get(key).is_some(), "error without {key}: {e}");
        }
        e
    }
}

/// A node: its namespace and private directories.
pub struct Node {
    pub ns: Netns,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new(subnet_env: &str) -> Node {
        let node = Node {
            ns: Netns::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(node.subnet_file(), subnet_env).unwrap();
        node
    }

    pub fn subnet_file(&self) -> PathBuf {
        self.dir.path().join("subnet.env")
    }

    /// The plugin's dataDir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("flannel")
    }

    /// host-local's dataDir for network `cbr0`.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// The addresses host-local holds for this node's network.
    pub fn reserved_ips(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.ipam_dir().join("cbr0")) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// The conflist's flannel entry as the runtime hands it over, with this
    /// node's files; `extra` keys are merged on top.
    pub fn conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "cbr0",
            "type": "flannel",
            "subnetFile": self.subnet_file(),
            "dataDir": self.data_dir(),
            "ipam": {"dataDir": self.ipam_dir()},
            "delegate": {"hairpinMode": true, "isDefaultGateway": true},
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    /// Runs the plugin in the node's namespace.
    pub fn run(&self, command: &str, id: &str, pod: Option<&Netns>, stdin: &[u8]) -> Run {
        let mut env = vec![
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", id.to_owned()),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_PATH", cni_path()),
        ];
        if let Some(p) = pod {
            env.push(("CNI_NETNS", p.path()));
        }
        run_in(&self.ns, FLANNEL, &env, stdin)
    }

    pub fn add(&self, id: &str, pod: &Netns, conf: &Value) -> Run {
        self.run("ADD", id, Some(pod), conf.to_string().as_bytes())
    }

    pub fn del(&self, id: &str, pod: Option<&Netns>, conf: &Value) -> Run {
        self.run("DEL", id, pod, conf.to_string().as_bytes())
    }
}

/// Runs `cmd` with `stdin` written to it and its stdout and stderr
/// captured. The write may fail when the program refuses before reading
/// all of a large input: that is the program's answer, which the output
/// shows, not a failure of the test.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Runs `program` inside `ns`: a dedicated thread enters the namespace and
/// spawns the child, which inherits the thread's namespace. The thread ends
/// with the child, so nothing else ever runs in the namespace.
pub fn run_in(ns: &Netns, program: &str, env: &[(&str, String)], stdin: &[u8]) -> Run {
    let path = ns.path();
    let program = program.to_owned();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let stdin = stdin.to_vec();
    std::thread::spawn(move || {
        setns(File::open(&path).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        let out = output_with_stdin(
            Command::new(program)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env),
            &stdin,
        );
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .join()
    .unwrap()
}
