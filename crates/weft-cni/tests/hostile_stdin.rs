//! Hostile CNI invocations (`tests/fixtures/hostile/`, format in its
//! README): bad stdin, bad fields of every type, bad `CNI_*` variables,
//! and a subnet.env the agent would never write. The runtime shows the
//! plugin's error to the user and may retry, so each must be the spec's
//! error JSON with the right code and exit status 1 (never a panic, which
//! the runtime would report as an unexplained crash), and must leave no
//! trace: no delegate run, nothing written under `dataDir`. Each case runs
//! through the library entry point and through the installed binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../weft-core/tests/fixtures/hostile/known_gaps.rs"]
mod known_gaps;

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{FLANNEL, GOOD_SUBNET_ENV, output_with_stdin};
use serde_json::{Map, Value, json};

/// Cases the plugin does not handle as the fixture says yet, each with the
/// fix it needs. They still run (no panic, valid output); once fixed, the
/// test fails until the entry is removed, so the list cannot go stale.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// The most an error result may take, whatever the input.
const MAX_ERROR_BYTES: usize = 4096;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

struct Case {
    name: String,
    fixture: Value,
}

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .map(|p| Case {
            name: p.file_stem().unwrap().to_str().unwrap().to_owned(),
            fixture: serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A throwaway node: `bin/bridge` (a stand-in delegate that records every
/// call in `calls`), subnet.env, and `state/` as the dataDir, which must
/// stay absent.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(subnet_env: &str) -> Node {
        let node = Node {
            dir: tempfile::tempdir().unwrap(),
        };
        let bin = node.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$CNI_COMMAND\" >> {}\ncat > /dev/null\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[]}}'; fi\n",
            node.path().join("calls").display()
        );
        std::fs::write(bin.join("bridge"), script).unwrap();
        std::fs::set_permissions(bin.join("bridge"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(node.path().join("subnet.env"), subnet_env).unwrap();
        node
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn placeholders(&self, s: &str) -> String {
        s.replace("@DIR@", self.path().to_str().unwrap())
    }

    /// Every path under the node with its size: what "nothing written"
    /// is checked against.
    fn listing(&self) -> BTreeMap<PathBuf, u64> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                out.insert(e.path(), meta.len());
                if meta.is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.path(), &mut out);
        out
    }
}

/// `{"$repeat": s, "times": n}` anywhere in a fixture value becomes `s`
/// repeated `n` times, so oversized inputs need no oversized files.
fn expand(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("$repeat") => Value::String(
            o["$repeat"]
                .as_str()
                .unwrap()
                .repeat(o["times"].as_u64().unwrap() as usize),
        ),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), expand(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(expand).collect()),
        other => other.clone(),
    }
}

/// What the runtime would pass: the good configuration with the fixture's
/// changes (`null` removes a field), or the fixture's raw stdin.
fn stdin_of(case: &Case, node: &Node) -> Vec<u8> {
    let f = &case.fixture;
    if let Some(s) = f.get("stdin") {
        return node.placeholders(s.as_str().unwrap()).into_bytes();
    }
    if let Some(file) = f.get("stdin_file") {
        return std::fs::read(fixtures_dir().join(file.as_str().unwrap())).unwrap();
    }
    if let Some(r) = f.get("stdin_repeat") {
        let text = |k: &str| r[k].as_str().unwrap().to_owned();
        let times = r["times"].as_u64().unwrap() as usize;
        return format!(
            "{}{}{}",
            text("prefix"),
            text("repeat").repeat(times),
            text("suffix")
        )
        .into_bytes();
    }
    let mut conf: Map<String, Value> = json!({
        "cniVersion": "1.0.0",
        "name": "cbr0",
        "type": "flannel",
        "subnetFile": "@DIR@/subnet.env",
        "dataDir": "@DIR@/state",
    })
    .as_object()
    .unwrap()
    .clone();
    if let Some(changes) = f.get("conf").and_then(Value::as_object) {
        for (k, v) in changes {
            if v.is_null() {
                conf.remove(k);
            } else {
                conf.insert(k.clone(), expand(v));
            }
        }
    }
    node.placeholders(&Value::Object(conf).to_string())
        .into_bytes()
}

fn env_of(case: &Case, node: &Node) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("CNI_COMMAND", "ADD".to_owned()),
        ("CNI_CONTAINERID", "hostile1".to_owned()),
        ("CNI_NETNS", "/run/netns/none".to_owned()),
        ("CNI_IFNAME", "eth0".to_owned()),
        (
            "CNI_PATH",
            node.path().join("bin").to_str().unwrap().to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(changes) = case.fixture.get("env").and_then(Value::as_object) {
        for (k, v) in changes {
            match v.as_str() {
                Some(s) => env.insert(k.clone(), node.placeholders(s)),
                None => env.remove(k),
            };
        }
    }
    env
}

/// Checks one output against the fixture; returns what is wrong.
fn judge(case: &Case, out: &[u8], status: i32) -> Result<(), String> {
    let code = case.fixture["expect_code"].as_u64().unwrap();
    let text = case.fixture["text"].as_str().unwrap_or_default();
    // Echoed input is cut to a line: a hostile conflist must not flood the
    // runtime's event log.
    if out.len() > MAX_ERROR_BYTES {
        return Err(format!("the error result is {} bytes", out.len()));
    }
    if status != 1 {
        return Err(format!(
            "exit status {status}, stdout {}",
            String::from_utf8_lossy(out)
        ));
    }
    if out.last() != Some(&b'\n') {
        return Err("the error result does not end with a newline".into());
    }
    let e: Value = serde_json::from_slice(out)
        .map_err(|e| format!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))?;
    let keys: Vec<&str> = e
        .as_object()
        .ok_or("the error result is not an object")?
        .keys()
        .map(String::as_str)
        .collect();
    if keys != ["cniVersion", "code", "details", "msg"] {
        return Err(format!("the error result has the keys {keys:?}: {e}"));
    }
    if !e["cniVersion"].is_string() || !e["msg"].is_string() || !e["details"].is_string() {
        return Err(format!("a field of the wrong type: {e}"));
    }
    if e["code"] != json!(code) || !e["msg"].as_str().unwrap().contains(text) {
        return Err(format!("expected code {code} with {text:?}, got {e}"));
    }
    Ok(())
}

fn run_binary(env: &HashMap<String, String>, stdin: &[u8]) -> (Vec<u8>, Vec<u8>, i32) {
    // The plugin may refuse before reading all of a huge input.
    let out = output_with_stdin(Command::new(FLANNEL).env_clear().envs(env), stdin);
    (out.stdout, out.stderr, out.status.code().unwrap_or(-1))
}

#[test]
fn corpus_covers_every_kind_of_input() {
    let cases = cases();
    assert!(cases.len() >= 90, "only {} CNI cases", cases.len());
    for prefix in [
        "stdin-",
        "cniversion-",
        "name-",
        "subnetfile-",
        "datadir-",
        "delegate-",
        "ipam-",
        "env-",
    ] {
        assert!(
            cases.iter().any(|c| c.name.starts_with(prefix)),
            "no {prefix} case"
        );
    }
}

/// The harness can see a write: the good configuration runs the stand-in
/// delegate and saves its file, which every hostile case must not.
#[test]
fn the_good_configuration_runs_the_delegate_and_saves_state() {
    let node = Node::new(GOOD_SUBNET_ENV);
    let case = Case {
        name: "good".into(),
        fixture: json!({}),
    };
    let (out, status) = weft_cni::main_with(
        |k| env_of(&case, &node).get(k).cloned(),
        stdin_of(&case, &node).as_slice(),
    );
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&out));
    assert!(node.path().join("state/hostile1").is_file());
    assert_eq!(
        std::fs::read_to_string(node.path().join("calls")).unwrap(),
        "ADD\n"
    );
}

#[test]
fn every_hostile_invocation_is_a_clean_error() {
    let mut failures = Vec::new();
    for case in cases() {
        let subnet_env = case.fixture["subnet_env"]
            .as_str()
            .unwrap_or(GOOD_SUBNET_ENV);
        let node = Node::new(subnet_env);
        let before = node.listing();
        let env = env_of(&case, &node);
        let stdin = stdin_of(&case, &node);

        let (out, status) = weft_cni::main_with(|k| env.get(k).cloned(), stdin.as_slice());
        let mut problems = Vec::new();
        if let Err(e) = judge(&case, &out, status) {
            problems.push(format!("library: {e}"));
        }
        if node.listing() != before {
            problems.push(format!(
                "library: files changed: {:?}",
                node.listing().keys().collect::<Vec<_>>()
            ));
        }

        // The same through the binary the runtime executes.
        let node = Node::new(subnet_env);
        let env = env_of(&case, &node);
        let stdin = stdin_of(&case, &node);
        let before = node.listing();
        let (bin_out, bin_err, bin_status) = run_binary(&env, &stdin);
        if !env.contains_key("CNI_COMMAND") {
            // A human at a shell: libcni's skel prints what the plugin is
            // and succeeds; there is no runtime to answer.
            if bin_status != 0
                || !bin_out.is_empty()
                || !String::from_utf8_lossy(&bin_err).contains("CNI plugin flannel")
            {
                problems.push(format!(
                    "binary without CNI_COMMAND: status {bin_status}, stdout {:?}",
                    String::from_utf8_lossy(&bin_out)
                ));
            }
        } else if let Err(e) = judge(&case, &bin_out, bin_status) {
            problems.push(format!(
                "binary: {e}; stderr {}",
                String::from_utf8_lossy(&bin_err)
            ));
        }
        if String::from_utf8_lossy(&bin_err).contains("panicked") {
            problems.push("binary: panicked".into());
        }
        if node.listing() != before {
            problems.push(format!(
                "binary: files changed: {:?}",
                node.listing().keys().collect::<Vec<_>>()
            ));
        }

        match (
            known_gaps::lookup(KNOWN_GAPS, &case.name),
            problems.is_empty(),
        ) {
            (None, true) => {}
            (None, false) => failures.push(format!("{}: {}", case.name, problems.join("; "))),
            (Some(_), true) => {
                failures.push(format!("{}: fixed, remove it from KNOWN_GAPS", case.name))
            }
            (Some(why), false) => eprintln!(
                "known gap {}: {}; needs: {why}",
                case.name,
                problems.join("; ")
            ),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
