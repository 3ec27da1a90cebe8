//! The binary's contract where no network namespace is needed: VERSION,
//! refused input, a node whose agent is not ready, and delegates that fail
//! (stand-in scripts, so the cleanup path is visible without root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{FLANNEL, GOOD_SUBNET_ENV, output_with_stdin};
use serde_json::{Value, json};

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    fn error(&self) -> Value {
        assert!(!self.ok, "plugin succeeded: {}", self.stdout);
        let e: Value =
            serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout));
        for key in ["cniVersion", "code", "msg", "details"] {
            assert!(e.get(key).is_some(), "error without {key}: {e}");
        }
        e
    }
}

/// The message of an error result.
fn msg(e: &Value) -> &str {
    e["msg"].as_str().unwrap()
}

fn flannel(env: &[(&str, &str)], stdin: &[u8]) -> Out {
    let out = output_with_stdin(
        Command::new(FLANNEL).env_clear().envs(env.iter().copied()),
        stdin,
    );
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temporary node-side setup: subnet.env, dataDir and a CNI_PATH dir.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(s.bin()).unwrap();
        std::fs::write(s.dir.path().join("subnet.env"), GOOD_SUBNET_ENV).unwrap();
        s
    }

    fn bin(&self) -> std::path::PathBuf {
        self.dir.path().join("bin")
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn conf(&self, extra: Value) -> Vec<u8> {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "cbr0",
            "type": "flannel",
            "subnetFile": self.dir.path().join("subnet.env"),
            "dataDir": self.data_dir(),
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c.to_string().into_bytes()
    }

    /// A stand-in delegate: logs each command and its stdin, then answers
    /// with `add` for ADD and success for everything else.
    fn fake_delegate(&self, name: &str, add: &str) {
        let log = self.dir.path().join("calls");
        let script = format!(
            "#!/bin/sh\nprintf '%s ' \"$CNI_COMMAND\" >> {log}\ncat >> {log}\necho >> {log}\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then {add}; fi\n",
            log = log.display()
        );
        let path = self.bin().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }

    fn run(&self, command: &str, id: &str, conf: &[u8]) -> Out {
        let path = self.bin().display().to_string();
        flannel(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", "/run/netns/none"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", &path),
            ],
            conf,
        )
    }
}

#[test]
fn version_lists_the_supported_versions() {
    let out = flannel(&[("CNI_COMMAND", "VERSION")], b"{\"cniVersion\":\"1.0.0\"}");
    assert!(out.ok);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"cniVersion": "1.1.0",
               "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn without_a_command_it_says_what_it_is_on_stderr() {
    let out = flannel(&[], b"");
    assert!(out.ok);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("CNI protocol versions supported: 0.1.0"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_stdin_is_a_decode_error_with_its_position() {
    let s = Setup::new();
    let e = s
        .run("ADD", "c1", b"{\"name\": \"cbr0\",\n \"cniVersion\": }")
        .error();
    assert_eq!(e["code"], 6);
    assert!(msg(&e).contains("line 2 column"), "{e}");
    // Nothing saved for a request that was refused.
    assert!(!s.data_dir().exists());
}

#[test]
fn oversized_stdin_is_refused() {
    let s = Setup::new();
    let big = vec![b' '; 2 << 20];
    assert_eq!(s.run("ADD", "c1", &big).error()["code"], 6);
}

#[test]
fn unknown_version_is_incompatible() {
    let s = Setup::new();
    let e = s
        .run("ADD", "c1", &s.conf(json!({"cniVersion": "9.9.9"})))
        .error();
    assert_eq!(e["code"], 1);
    assert!(msg(&e).contains("\"9.9.9\""), "{e}");
}

#[test]
fn missing_variables_are_named() {
    let e = flannel(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")], b"{}").error();
    assert_eq!(e["code"], 4);
    assert!(
        msg(&e).contains("[CNI_CONTAINERID,CNI_NETNS,CNI_PATH]"),
        "{e}"
    );
}

#[test]
fn container_ids_that_are_paths_are_refused() {
    let s = Setup::new();
    for id in ["../../etc/passwd", "a/b", ".."] {
        let e = s.run("ADD", id, &s.conf(json!({}))).error();
        assert_eq!(e["code"], 4, "{id}");
    }
    assert!(!s.data_dir().exists());
}

#[test]
fn missing_subnet_env_says_the_agent_is_not_ready() {
    let s = Setup::new();
    let missing = s.dir.path().join("missing.env");
    let e = s
        .run("ADD", "c1", &s.conf(json!({"subnetFile": missing})))
        .error();
    // flannel's plugin: {"code":999,"msg":"open <path>: no such file or directory"}.
    let golden: Value =
        serde_json::from_str(include_str!("golden/cni-error-missing-subnet-env.json")).unwrap();
    assert_eq!(golden["code"], 999);
    assert_eq!(e["code"], 11);
    let msg = msg(&e);
    assert!(
        msg.starts_with(&format!(
            "{} is missing: the agent on this node",
            missing.display()
        )),
        "{msg}"
    );
    assert!(msg.contains("kubectl -n kube-flannel logs"), "{msg}");
    assert!(
        e["details"]
            .as_str()
            .unwrap()
            .starts_with(&format!("open {}", missing.display())),
        "{e}"
    );
    assert!(!s.data_dir().exists());
}

#[test]
fn a_missing_delegate_fails_before_anything_is_saved() {
    let s = Setup::new();
    let e = s
        .run(
            "ADD",
            "c1",
            &s.conf(json!({"delegate": {"type": "no-such-plugin"}})),
        )
        .error();
    assert_eq!(e["code"], 7);
    let msg = msg(&e);
    assert!(
        msg.contains("\"no-such-plugin\" not found in CNI_PATH"),
        "{msg}"
    );
    assert!(!s.data_dir().join("c1").exists());
}

#[test]
fn a_failing_delegate_is_reported_with_context_and_undone() {
    let s = Setup::new();
    s.fake_delegate(
        "bridge",
        r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"try later"}'; exit 1"#,
    );
    let e = s.run("ADD", "c1", &s.conf(json!({}))).error();
    assert_eq!(e["code"], 11);
    assert_eq!(e["msg"], "delegate bridge failed: busy");
    assert_eq!(e["details"], "try later");
    // The delegate saw ADD, then the cleanup DEL with the same configuration.
    let calls = s.calls();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(lines[0].starts_with("ADD {"), "{calls}");
    assert_eq!(lines[1].strip_prefix("DEL "), lines[0].strip_prefix("ADD "));
    assert!(!s.data_dir().join("c1").exists());
}

#[test]
fn a_delegate_crash_without_a_result_is_reported() {
    let s = Setup::new();
    s.fake_delegate("bridge", "echo 'segfault at 0' >&2; exit 139");
    let e = s.run("ADD", "c1", &s.conf(json!({}))).error();
    assert_eq!(e["code"], 999);
    assert!(msg(&e).starts_with("delegate bridge failed"), "{e}");
    assert_eq!(e["details"], "segfault at 0");
}

#[test]
fn a_1_1_0_request_reaches_the_delegate_as_1_0_0() {
    let s = Setup::new();
    s.fake_delegate("bridge", r#"echo '{"cniVersion":"1.0.0","ips":[]}'"#);
    let conf = s.conf(json!({"cniVersion": "1.1.0"}));
    let out = s.run("ADD", "c1", &conf);
    assert!(out.ok, "{}", out.stdout);
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result, json!({"cniVersion": "1.1.0", "ips": []}));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(s.data_dir().join("c1")).unwrap()).unwrap();
    assert_eq!(saved["cniVersion"], "1.0.0");

    // STATUS and GC exist from 1.1.0 on.
    assert!(s.run("STATUS", "", &conf).ok);
    assert!(s.run("GC", "", &conf).ok);
    let old = s.conf(json!({}));
    assert_eq!(s.run("STATUS", "", &old).error()["code"], 1);
}

#[test]
fn status_reports_an_agent_that_is_not_ready() {
    let s = Setup::new();
    s.fake_delegate("bridge", "true");
    let missing = s.dir.path().join("missing.env");
    let conf = s.conf(json!({"cniVersion": "1.1.0", "subnetFile": missing}));
    let e = s.run("STATUS", "", &conf).error();
    assert_eq!(e["code"], 50);
    assert!(msg(&e).contains("has not written it yet"), "{e}");
}

#[test]
fn del_without_state_succeeds_silently() {
    let s = Setup::new();
    let out = s.run("DEL", "never-added", &s.conf(json!({})));
    assert!(out.ok, "{}", out.stdout);
    assert_eq!(out.stdout, "");
}

#[test]
fn del_keeps_the_state_when_the_delegate_fails_so_a_retry_can_finish() {
    let s = Setup::new();
    s.fake_delegate("bridge", r#"echo '{"cniVersion":"1.0.0","ips":[]}'"#);
    let conf = s.conf(json!({}));
    assert!(s.run("ADD", "c1", &conf).ok);
    let fail = "#!/bin/sh\necho '{\"code\":5,\"msg\":\"netns busy\"}'\nexit 1\n";
    std::fs::write(s.bin().join("bridge"), fail).unwrap();
    let e = s.run("DEL", "c1", &conf).error();
    assert_eq!(e["msg"], "delegate bridge failed: netns busy");
    assert!(s.data_dir().join("c1").exists());
    s.fake_delegate("bridge", "true");
    assert!(s.run("DEL", "c1", &conf).ok);
    assert!(!s.data_dir().join("c1").exists());
}

#[test]
fn an_unreadable_saved_file_is_cleaned_up_with_the_current_configuration() {
    let s = Setup::new();
    s.fake_delegate("bridge", "true");
    std::fs::create_dir_all(s.data_dir()).unwrap();
    std::fs::write(s.data_dir().join("c1"), "{torn").unwrap();
    let out = s.run("DEL", "c1", &s.conf(json!({})));
    assert!(out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("is not a delegate configuration"),
        "{}",
        out.stderr
    );
    assert!(s.calls().starts_with("DEL {"), "{}", s.calls());
    assert!(!Path::new(&s.data_dir().join("c1")).exists());
}

#[test]
fn check_of_an_unknown_container_is_code_3() {
    let s = Setup::new();
    s.fake_delegate("bridge", "true");
    assert_eq!(s.run("CHECK", "c9", &s.conf(json!({}))).error()["code"], 3);
    assert_eq!(
        s.run("CHECK", "c9", &s.conf(json!({"cniVersion": "0.3.1"})))
            .error()["code"],
        1
    );
}
