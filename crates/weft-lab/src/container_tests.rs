//! The lab's container settings are deploy/base/kube-weft.yml's: this test reads
//! the manifest and fails when they drift apart.

use super::*;
use serde_json::Value;

const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/base/kube-weft.yml"
);

/// The manifest's documents as JSON, through Python's YAML parser
/// (Debian's python3-yaml, which scripts/validate-manifests.sh relies on
/// too): the workspace has no YAML crate, and a hand-written reader would
/// be a second, weaker parser.
fn manifest() -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
            MANIFEST,
        ])
        .output()
        .expect("python3 runs (apt-get install python3 python3-yaml)");
    assert!(
        out.status.success(),
        "python3 with yaml could not read {MANIFEST} (apt-get install python3-yaml): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

fn pod_spec() -> Value {
    manifest()
        .into_iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("kube-weft.yml has a DaemonSet")["spec"]["template"]["spec"]
        .clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is not a list"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

fn mounts(container: &Value) -> Vec<(String, String)> {
    container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().expect("name").to_owned(),
                m["mountPath"].as_str().expect("mountPath").to_owned(),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// What every container of the DaemonSet must say, as the lab runs them.
fn assert_locked_down(container: &Value) {
    let name = &container["name"];
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
    assert_ne!(sc["privileged"], true, "{name}");
}

#[test]
fn manifest_and_lab_agree() {
    let spec = pod_spec();
    assert_eq!(spec["hostNetwork"], true);
    let agent = spec["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "kube-flannel")
        .expect("the agent container")
        .clone();
    assert_eq!(strings(&agent["command"]), AGENT_COMMAND);
    assert_locked_down(&agent);
    assert_eq!(
        strings(&agent["securityContext"]["capabilities"]["add"]),
        CAPABILITIES
    );
    assert_eq!(mounts(&agent), owned(&AGENT_MOUNTS));

    let inits = spec["initContainers"].as_array().expect("initContainers");
    assert_eq!(inits.len(), INIT_STEPS.len());
    for (init, step) in inits.iter().zip(INIT_STEPS) {
        assert_eq!(init["name"], step.name);
        assert_eq!(strings(&init["command"]), ["/bin/sh", "-c"]);
        let args = strings(&init["args"]);
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(args.len(), 1, "{}", step.name);
        assert_eq!(words(&args[0]), words(step.script), "{}", step.name);
        assert_eq!(mounts(init), owned(step.mounts), "{}", step.name);
        assert_locked_down(init);
        // The lab runs them --read-only: they write only to their mounts.
        assert_eq!(init["securityContext"]["readOnlyRootFilesystem"], true);
        assert!(
            init["securityContext"]["capabilities"]["add"].is_null(),
            "{} needs no capability",
            step.name
        );
    }

    // Every volume the containers mount has a place in the lab.
    let lab = LabName::new("t").unwrap();
    let paths = lab.node_paths("node1");
    for volume in spec["volumes"].as_array().expect("volumes") {
        let name = volume["name"].as_str().expect("volume name");
        assert!(host_path(&lab, &paths, name).is_ok(), "volume {name}");
    }
}

#[test]
fn agent_container_runs_the_native_command_line() {
    let lab = LabName::new("t").unwrap();
    let paths = lab.node_paths("node1");
    let mut native = Command::new("/somewhere/weftd");
    native.args([
        "--subnet-file=/run/weft-lab/t/node1/subnet.env",
        "--ip-masq",
    ]);
    native.env("NODE_NAME", "node1");
    let node = NodeRecord {
        name: "node1".into(),
        index: 1,
        netns: "t-node1".into(),
        underlay_ip: std::net::Ipv4Addr::new(192, 0, 2, 1),
        cloud: None,
        public_ip: None,
        underlay_ipv6: None,
        subnets: Vec::new(),
        pid: None,
        dir: paths.dir.clone(),
        extra_args: Vec::new(),
        extra_env: Vec::new(),
    };
    let mut spec = crate::LabSpec::new("t").unwrap();
    spec.backend = crate::Backend::None;
    let state: LabState = serde_json::from_value(serde_json::json!({
        "format": 1, "name": "t", "backend": "none", "network": "10.244.0.0/16",
        "net_conf": spec.net_conf(),
        "store": {"kind": "local", "path": "/run/weft-lab/t/leases.db",
                  "net_conf_path": "/run/weft-lab/t/net-conf.json"},
        "bin_dir": "/somewhere", "agent_args": [],
        "underlay": {"netns": "t-ul", "bridge": "br0", "gateway": "192.0.2.254",
                     "outside": "198.51.100.1"},
        "nodes": [], "pods": []
    }))
    .unwrap();
    let cmd = agent_command(&state, "localhost/weft:dev", &node, &paths, &native).unwrap();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let image = args.iter().position(|a| a == "localhost/weft:dev").unwrap();
    assert_eq!(
        &args[image + 1..],
        [
            "/usr/local/bin/weftd",
            "--subnet-file=/run/weft-lab/t/node1/subnet.env",
            "--ip-masq"
        ]
    );
    let options = &args[..image];
    for wanted in [
        "--network=ns:/run/netns/t-node1",
        "--cap-drop=ALL",
        "--cap-add=NET_ADMIN,NET_RAW",
        "--security-opt=no-new-privileges",
        "--entrypoint=/usr/local/bin/iptables-select",
        "--env=NODE_NAME=node1",
        "--volume=/dev/net/tun:/dev/net/tun",
        "--volume=/run/weft-lab/t:/run/weft-lab/t",
        "--volume=/run/weft-lab/t/node1/run/flannel:/run/flannel",
        "--name=weft-lab-t-node1",
        "--label=weft-lab=t",
    ] {
        assert!(
            options.iter().any(|a| a == wanted),
            "{wanted} in {options:?}"
        );
    }
}
