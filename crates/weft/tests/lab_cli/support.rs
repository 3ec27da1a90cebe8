//! What the `weft lab` CLI tests share: running `weft`, checking that a
//! lab can be made here, naming labs uniquely, and reading a lab's state.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ipnet::IpNet;
use serde_json::Value;

pub fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `weft args…` and asserts success, showing its output otherwise.
pub fn weft_ok(args: &[&str]) -> Output {
    let out = weft(args);
    assert!(
        out.status.success(),
        "weft {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Fails, saying how to run these tests, without root; fails when the
/// workspace binaries are missing, which is a build problem to fix.
pub fn prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (network namespaces): run it as root (CI does: scripts/test.sh), or skip these tests visibly with `cargo nextest run --workspace --profile unprivileged`"
    );
    let dir = Path::new(env!("CARGO_BIN_EXE_weft")).parent().unwrap();
    for bin in ["weftd", "flannel"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the workspace first (`cargo build --workspace`), then rerun",
            dir.join(bin).display()
        );
    }
}

/// A lab name unique to this test run; removes the lab when dropped, so a
/// failed assertion leaves nothing behind.
pub struct LabName(pub String);

impl LabName {
    pub fn new(test: &str) -> LabName {
        LabName(format!("t{}-{test}", std::process::id()))
    }

    pub fn state(&self) -> Value {
        let path = format!("/run/weft-lab/{}/lab.json", self.0);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// `weft lab up` of a backend-`none` lab with `nodes` nodes and `pods`
    /// pods on each.
    pub fn up_none(&self, nodes: u32, pods: u32) {
        let (nodes, pods) = (nodes.to_string(), pods.to_string());
        weft_ok(&[
            "lab",
            "up",
            "--name",
            &self.0,
            "--backend",
            "none",
            "--nodes",
            &nodes,
            "--pods-per-node",
            &pods,
        ]);
    }

    /// `weft lab up` of a two-node wireguard lab with `extra` arguments;
    /// what it printed (the node table).
    pub fn up_wireguard(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "lab",
            "up",
            "--name",
            &self.0,
            "--backend",
            "wireguard",
            "--nodes",
            "2",
        ];
        args.extend_from_slice(extra);
        text(&weft_ok(&args).stdout)
    }

    /// What `weft lab check` printed (the matrix, and what the lab is).
    pub fn check(&self) -> String {
        text(&weft_ok(&["lab", "check", "--name", &self.0]).stdout)
    }

    /// The lab's first pod answers a ping from its node: the lab is wired,
    /// not a husk.
    pub fn first_pod_answers(&self) {
        let state = self.state();
        let pod = &state["pods"][0];
        let addr = pod["addresses"][0]
            .as_str()
            .unwrap()
            .parse::<IpNet>()
            .unwrap();
        let node = pod["node"].as_str().unwrap();
        let target = addr.addr().to_string();
        let out = weft_ok(&[
            "lab", "exec", "--name", &self.0, node, "--", "ping", "-c", "1", "-W", "2", &target,
        ]);
        let out = text(&out.stdout);
        assert!(out.contains("1 received"), "{out}");
    }

    /// `weft lab down`, then nothing of the lab is left: namespaces, state
    /// directory, agents.
    pub fn down_leaves_nothing(&self) {
        weft_ok(&["lab", "down", "--name", &self.0]);
        assert_eq!(netns_of(&self.0), Vec::<String>::new());
        assert!(!Path::new("/run/weft-lab").join(&self.0).exists());
        assert_eq!(agents_of(&self.0), Vec::<u32>::new());
    }
}

impl Drop for LabName {
    fn drop(&mut self) {
        let _ = weft(&["lab", "down", "--name", &self.0]);
    }
}

pub fn netns_of(lab: &str) -> Vec<String> {
    let prefix = format!("{lab}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Live (non-zombie) weftd processes of `lab`.
pub fn agents_of(lab: &str) -> Vec<u32> {
    let marker = format!("/run/weft-lab/{lab}/");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = text(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default());
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if cmdline.contains("weftd") && cmdline.contains(&marker) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

pub fn node<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
}

pub fn subnet_of(node: &Value) -> IpNet {
    node["subnets"][0].as_str().unwrap().parse().unwrap()
}

/// The line of `summary` (a node table) whose first word is `first`.
pub fn row<'a>(summary: &'a str, first: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row for {first} in:\n{summary}"))
}
