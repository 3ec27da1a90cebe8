//! `weft check` run inside a throwaway network namespace standing for a
//! node: its findings are true, and a firewall rule dropping the VXLAN port
//! is reported as a failure with its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{assert_finding, finding, output_ok, require_root};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("weftchk-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.ip("link add eth0 type veth peer name eth0p");
        ns.ip("link set eth0 up");
        ns.ip("link set eth0p up");
        ns.ip("addr add 192.0.2.1/24 dev eth0");
        ns.ip("route add default via 192.0.2.254");
        ns
    }

    fn ip(&self, args: &str) {
        let mut all = vec!["ip", "-n", &self.0];
        all.extend(args.split_whitespace());
        run(&all);
    }

    fn exec(&self, argv: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(argv)
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(argv: &[&str]) {
    output_ok(Command::new(argv[0]).args(&argv[1..]));
}

fn check(ns: &Netns, conf: &std::path::Path) -> serde_json::Value {
    let weft = env!("CARGO_BIN_EXE_weft");
    let out = ns.exec(&[
        weft,
        "check",
        "--json",
        "--net-config",
        conf.to_str().unwrap(),
    ]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `net-conf.json` with `json` in a fresh directory (kept alive by the
/// returned guard); fails without root, saying why.
fn root_and_conf(json: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("net-conf.json");
    std::fs::write(&conf, json).unwrap();
    (dir, conf)
}

#[test]
fn findings_are_true_and_a_dropped_port_fails_with_its_fix() {
    let (_dir, conf) = root_and_conf(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
    let ns = Netns::new("a");
    // New namespaces inherit the root namespace's forwarding on some
    // kernels (devconf_inherit_init_net): set what this test depends on.
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);

    let report = check(&ns, &conf);
    assert_eq!(finding(&report, "kernel vxlan")["level"], "ok");
    assert_eq!(finding(&report, "external interface")["level"], "ok");
    assert!(
        finding(&report, "external interface")["seen"]
            .as_str()
            .unwrap()
            .starts_with("eth0 (192.0.2.1)")
    );
    assert_eq!(
        finding(&report, "pod MTU")["seen"],
        "1500 − 50 (vxlan) = 1450"
    );
    // A namespace that forwards nothing: the check must say so.
    assert_eq!(finding(&report, "ip_forward")["level"], "fail");
    assert_eq!(finding(&report, "firewall 8472/udp")["level"], "ok");

    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ns.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP",
    ]);
    let report = check(&ns, &conf);
    assert_eq!(finding(&report, "ip_forward")["level"], "ok");
    let fw = finding(&report, "firewall 8472/udp");
    assert_finding(&fw, "fail", "seen", "--dport 8472 -j DROP");
    let accept = "iptables -I INPUT -p udp --dport 8472 -j ACCEPT";
    assert_finding(&fw, "fail", "fix", accept);
    assert_eq!(report["ok"], false);
}

#[test]
fn mtu_too_small_for_the_backend_fails() {
    let (_dir, conf) = root_and_conf(
        r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}"#,
    );
    let ns = Netns::new("b");
    ns.ip("-6 addr add 2001:db8::1/64 dev eth0 nodad");
    ns.ip("-6 route add default via 2001:db8::fe dev eth0");
    ns.ip("link set eth0 mtu 1300");
    let report = check(&ns, &conf);
    let mtu = finding(&report, "pod MTU");
    assert_finding(&mtu, "fail", "seen", "1250, below 1280");
}

/// With the ipip backend configured, the check says whether this kernel can
/// make an ipip device, as `ip link add … type ipip` finds it (the host
/// here cannot: the VM suite sees the other answer).
#[test]
fn ipip_support_is_reported_as_the_kernel_has_it() {
    let (_dir, conf) = root_and_conf(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}"#);
    let ns = Netns::new("c");
    let kernel_has_ipip = ns
        .exec(&[
            "ip",
            "link",
            "add",
            "truth",
            "type",
            "ipip",
            "local",
            "192.0.2.1",
        ])
        .status
        .success();
    let report = check(&ns, &conf);
    let ipip = finding(&report, "kernel ipip");
    if kernel_has_ipip {
        assert_eq!(ipip["level"], "ok", "{ipip}");
    } else {
        assert_finding(&ipip, "fail", "fix", "modprobe ipip");
        assert_eq!(report["ok"], false);
    }
}
