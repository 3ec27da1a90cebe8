//! The CNI plugin's whole invocation through its library entry point,
//! `weft_cni::main_with`, with the configuration on stdin fuzzed. Input:
//! byte 0 picks the command (ADD, DEL, CHECK, STATUS, GC, VERSION), byte 1
//! a file already saved for the container (none, a delegate configuration,
//! garbage, one naming a path as its plugin), the rest is stdin.
//!
//! Nothing may leave the sandbox: `CNI_PATH` is an empty directory, so no
//! delegate is ever found nor run, and a `subnetFile` or `dataDir` that is
//! absent, empty or absolute is pointed into a private temporary directory
//! (relative ones and values of the wrong type are left alone: the plugin
//! must refuse those itself). Properties: no panic; exit status 0 or 1; a
//! failure prints the spec's error object; nothing is saved.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const COMMANDS: [&str; 6] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"];
const SAVED: [Option<&[u8]>; 4] = [
    None,
    Some(br#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","ipam":{"type":"host-local"}}"#),
    Some(b"{oops"),
    Some(br#"{"type":"../../bin/sh"}"#),
];
const ID: &str = "fuzz1";

struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    fn subnet_env(&self) -> PathBuf {
        self.root.join("subnet.env")
    }
}

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("weft-fuzz-cni-{}", std::process::id()));
        let s = Sandbox { root };
        std::fs::create_dir_all(s.bin()).expect("bin");
        std::fs::create_dir_all(s.state()).expect("state");
        std::fs::write(
            s.subnet_env(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\n\
             FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:5::1/64\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        )
        .expect("subnet.env");
        s
    })
}

/// Points the configuration's paths into the sandbox; other input is
/// passed on byte for byte.
fn confine(stdin: &[u8], s: &Sandbox) -> Vec<u8> {
    let Ok(Value::Object(mut conf)) = serde_json::from_slice::<Value>(stdin) else {
        return stdin.to_vec();
    };
    let mut changed = false;
    for (key, to) in [("subnetFile", s.subnet_env()), ("dataDir", s.state())] {
        let redirect = match conf.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(p)) => p.is_empty() || Path::new(p).is_absolute(),
            Some(_) => false,
        };
        if redirect {
            conf.insert(key.into(), Value::String(to.display().to_string()));
            changed = true;
        }
    }
    if changed {
        serde_json::to_vec(&Value::Object(conf)).expect("serialises")
    } else {
        stdin.to_vec()
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let s = sandbox();
    let command = COMMANDS[usize::from(data[0]) % COMMANDS.len()];
    let saved = SAVED[usize::from(data[1]) % SAVED.len()];
    for f in files(&s.state()) {
        let _ = std::fs::remove_file(s.state().join(f));
    }
    if let Some(bytes) = saved {
        std::fs::write(s.state().join(ID), bytes).expect("saved file");
    }
    let stdin = confine(&data[2..], s);
    let bin = s.bin().display().to_string();
    let env = |k: &str| -> Option<String> {
        Some(match k {
            "CNI_COMMAND" => command.to_owned(),
            "CNI_CONTAINERID" => ID.to_owned(),
            "CNI_NETNS" => "/run/netns/fuzz".to_owned(),
            "CNI_IFNAME" => "eth0".to_owned(),
            "CNI_PATH" => bin.clone(),
            _ => return None,
        })
    };
    let (out, status) = weft_cni::main_with(env, stdin.as_slice());
    match status {
        0 => {
            if command == "VERSION" {
                serde_json::from_slice::<Value>(&out).expect("VERSION prints JSON");
            }
        }
        1 => {
            let e: Value = serde_json::from_slice(&out).expect("an error result is JSON");
            assert!(e["code"].is_u64(), "{e}");
            assert!(e["msg"].is_string() && e["details"].is_string(), "{e}");
            assert!(e["cniVersion"].is_string(), "{e}");
        }
        other => panic!("exit status {other}"),
    }
    // Nothing new was saved (a DEL may have removed the saved file).
    let now = files(&s.state());
    assert!(
        now.is_empty() || (saved.is_some() && now == [ID]),
        "files appeared in dataDir: {now:?}"
    );
    assert!(files(&s.bin()).is_empty(), "CNI_PATH changed");
});
