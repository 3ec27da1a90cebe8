//! `weft lab up --image`: the agents run in weft's container image under
//! podman and runc, with deploy/base/kube-weft.yml's securityContext, mounts
//! and init containers, and the pods still reach each other.
//!
//! The image is built here by scripts/image.sh from the binaries this very
//! run built (the Debian base is reused when it exists; the first build
//! takes a minute or two). Then a vxlan lab and a userspace-WireGuard lab,
//! both dual-stack (so the agents' IPv6 kernel settings are exercised with
//! `/proc/sys` read-only, as runc gives every unprivileged container), are
//! brought up, checked and taken down, and the root namespace must look
//! the same before and after: podman's default network would add a
//! `cni-podman0` bridge and CNI-* chains there, and the lab never uses it.
//!
//! Needs root and podman, runc, mmdebstrap (scripts/install-deps.sh): fails
//! saying so without them (the `unprivileged` nextest profile skips it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

// The lab CLI tests' helpers; this test uses a few of them.
#[path = "lab_cli/support.rs"]
#[allow(dead_code)]
mod support;

use support::*;

const IMAGE: &str = "localhost/weft:dev";
/// Where `weft lab` writes podman's settings; podman calls here use it too.
const CONTAINERS_CONF: &str = "/run/weft-lab/podman-containers.conf";

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("CONTAINERS_CONF", CONTAINERS_CONF)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn installed(program: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|dir| dir.join(program).is_file())
}

/// What the root namespace holds that a lab must never change: its links
/// and its iptables rules (policy counters stripped).
fn root_namespace() -> String {
    let mut out = run("ip", &["-o", "link"]);
    for save in ["iptables-save", "ip6tables-save"] {
        for line in run(save, &[]).lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = match line.rsplit_once(" [") {
                Some((rule, counters)) if line.starts_with(':') && counters.ends_with(']') => rule,
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Builds the image from this run's binaries (debug or release, as this
/// test was built).
fn build_image() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_weft")).parent().unwrap();
    let profile = bin_dir.file_name().unwrap().to_str().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(repo.join("scripts/image.sh"))
        .args(["--profile", profile, "--tag", IMAGE])
        .current_dir(&repo)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/image.sh failed ({status})");
}

/// The lab's containers (running or not), by its label: `{{.Names}}` or
/// `{{.ID}}`, sorted.
fn containers_by(lab: &str, format: &str) -> Vec<String> {
    let mut out: Vec<String> = run(
        "podman",
        &[
            "ps",
            "--all",
            &format!("--format={format}"),
            &format!("--filter=label=weft-lab={lab}"),
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    out.sort();
    out
}

fn containers(lab: &str) -> Vec<String> {
    containers_by(lab, "{{.Names}}")
}

/// One line of `/proc/<pid>/status`, e.g. `CapEff`.
fn proc_status(pid: u64, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn lab_in_image(backend: &str, extra: &[&str]) {
    let lab = LabName::new(&format!("img-{backend}"));
    let name = lab.0.as_str();
    let mut args = vec![
        "lab",
        "up",
        "--name",
        name,
        "--nodes",
        "2",
        "--backend",
        backend,
        "--ip-family",
        "dual",
        "--image",
        IMAGE,
    ];
    args.extend_from_slice(extra);
    weft_ok(&args);
    let first = containers_by(name, "{{.ID}}");

    // A crash that loses lab.json leaves running containers behind; the
    // next `up` of the same name finds them by their label and replaces
    // them, as it does the native lab's processes.
    std::fs::remove_file(format!("/run/weft-lab/{name}/lab.json")).unwrap();
    weft_ok(&args);
    let second = containers_by(name, "{{.ID}}");
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "{first:?} {second:?}"
    );

    let state = lab.state();
    assert_eq!(state["image"], IMAGE);
    assert_eq!(
        containers(name),
        [
            format!("weft-lab-{name}-node1"),
            format!("weft-lab-{name}-node2")
        ]
    );
    for node in state["nodes"].as_array().unwrap() {
        // The recorded pid is the containerised weftd, with exactly the
        // manifest's capabilities (NET_ADMIN 12, NET_RAW 13), no way to
        // gain more, and the runtime's default seccomp filter.
        let pid = node["pid"].as_u64().expect("the agent's pid");
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.starts_with("/usr/local/bin/weftd\0"), "{cmdline:?}");
        assert_eq!(proc_status(pid, "CapEff"), "0000000000003000");
        assert_eq!(proc_status(pid, "CapBnd"), "0000000000003000");
        assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
        assert_eq!(proc_status(pid, "Seccomp"), "2");
        // The init containers installed the plugin and the conflist.
        let dir = Path::new(node["dir"].as_str().unwrap());
        assert!(dir.join("opt-cni-bin/flannel").is_file());
        assert!(dir.join("cni-net.d/10-flannel.conflist").is_file());
        // The image's entrypoint chose an iptables backend, then ran weftd.
        let log = std::fs::read_to_string(dir.join("weftd.log")).unwrap();
        assert!(log.contains("iptables-select: using the"), "{log}");
        // With /proc/sys read-only the agent cannot write sysctls; what
        // the dataplane needs must hold anyway: forwarding on, no IPv6
        // address of the node stuck in duplicate address detection.
        let netns = node["netns"].as_str().unwrap();
        let sysctl = |key: &str| run("ip", &["netns", "exec", netns, "cat", key]);
        assert_eq!(sysctl("/proc/sys/net/ipv4/ip_forward").trim(), "1");
        assert_eq!(sysctl("/proc/sys/net/ipv6/conf/all/forwarding").trim(), "1");
        let addresses = run("ip", &["-n", netns, "-6", "-o", "addr"]);
        assert!(
            !addresses.contains("tentative") && !addresses.contains("dadfailed"),
            "{addresses}"
        );
    }

    let out = weft(&["lab", "check", "--name", name, "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["pairs"].as_array().unwrap().len(), 4, "{report:#}");

    weft_ok(&["lab", "down", "--name", name]);
    assert_eq!(containers(name), Vec::<String>::new());
}

#[test]
fn agents_in_the_image_carry_pod_traffic_and_leave_the_host_alone() {
    prerequisites();
    for tool in ["podman", "runc", "mmdebstrap"] {
        assert!(
            installed(tool),
            "{tool} is missing: run scripts/install-deps.sh (apt-get install -y --no-install-recommends podman buildah runc mmdebstrap)"
        );
    }
    let before = root_namespace();
    build_image();
    lab_in_image("vxlan", &[]);
    lab_in_image("wireguard", &["--wireguard-path", "userspace"]);
    let after = root_namespace();
    assert_eq!(
        before, after,
        "the root namespace changed: podman ran without --network none?"
    );
    let all = run("podman", &["ps", "--all", "--format={{.Names}}"]);
    let ours = format!("weft-lab-t{}-", std::process::id());
    assert!(
        all.lines().all(|c| !c.starts_with(&ours)),
        "containers of this test's labs left behind: {all}"
    );
}
