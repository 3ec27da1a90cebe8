//! `weftd --cni-conf-file` (issue 5): the agent installs flannel's conflist
//! itself, as K3s does, once its subnet.env is written; a restart leaves
//! an identical file alone, and a deleted or changed one is put back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestLab, output_ok, require_root, succeeded, wait_until};
use weft_core::cni_conflist::FLANNEL_CONFLIST;
use weft_lab::Backend;

/// Inside the agent's mount namespace `/run` is the node's own `run/`
/// directory (see weft-lab's runfs), so each node gets its own file and
/// the host's /etc/cni is never touched.
const IN_AGENT: &str = "/run/cni/net.d/10-flannel.conflist";

fn conflist_on_host(lab: &TestLab, node: &str) -> PathBuf {
    lab.lab()
        .node(node)
        .unwrap()
        .dir
        .join("run/cni/net.d/10-flannel.conflist")
}

/// Runs weft's CNI plugin (`flannel`) in `node`'s namespace as a
/// container runtime would with the installed conflist: its first plugin,
/// given the list's `name` and `cniVersion`. Only the node's file paths
/// are added: a lab node's subnet.env and CNI state are not at the
/// defaults (`/run/flannel/subnet.env`, `/var/lib/cni/...`) a real node
/// uses. Returns the plugin's output.
fn add_pod_with_conflist(lab: &TestLab, node: &str, pod_netns: &str, conflist: &str) -> String {
    let list: serde_json::Value = serde_json::from_str(conflist).unwrap();
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    let dir = lab.lab().node(node).unwrap().dir.clone();
    conf["subnetFile"] = dir.join("subnet.env").to_str().unwrap().into();
    conf["dataDir"] = dir.join("cni-flannel").to_str().unwrap().into();
    conf["ipam"] = serde_json::json!({ "dataDir": dir.join("ipam") });
    let bin_dir = weft_lab::default_bin_dir().unwrap();
    let plugin = bin_dir.join("flannel");
    let cni_path = format!("{}:/usr/lib/cni", bin_dir.display());
    let netns = weft_lab::netns_path(pod_netns);
    let output = lab
        .lab()
        .in_netns(node, move || {
            let mut child = Command::new(&plugin)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("CNI_COMMAND", "ADD")
                .env("CNI_CONTAINERID", "conflist-pod")
                .env("CNI_NETNS", netns)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", cni_path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| weft_lab::LabError::io("running the CNI plugin", e))?;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(conf.to_string().as_bytes());
            }
            child
                .wait_with_output()
                .map_err(|e| weft_lab::LabError::io("waiting for the CNI plugin", e))
        })
        .unwrap();
    let output = succeeded(output, "ADD with the installed conflist");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn agent_installs_the_conflist_once_ready_and_keeps_it() {
    require_root();
    let flag = format!("--cni-conf-file={IN_AGENT}");
    let mut lab = TestLab::up_with("e2cni", Backend::HostGw, |spec| {
        spec.nodes = 1;
        spec.pods_per_node = 1;
        spec.agent_args = vec![flag];
    });
    // `up` returns once the agent is ready (subnet.env written, /readyz
    // true); by then the conflist is there, exactly flannel's.
    let path = conflist_on_host(&lab, "node1");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FLANNEL_CONFLIST);
    let before = std::fs::metadata(&path).unwrap();
    assert_eq!(before.permissions().mode() & 0o777, 0o644);
    let dir_entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        dir_entries,
        ["10-flannel.conflist"],
        "no temporary file left"
    );

    // The plugin wires a pod with it: an address of the node's subnet,
    // and the lab's own pod (made with the lab's config) answers.
    let pod_netns = format!("{}-node1-pod9", lab.lab().name());
    let status = Command::new("ip")
        .args(["netns", "add", &pod_netns])
        .status()
        .unwrap();
    assert!(status.success(), "ip netns add {pod_netns}");
    let result = add_pod_with_conflist(&lab, "node1", &pod_netns, FLANNEL_CONFLIST);
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    let address: ipnet::IpNet = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let subnet: ipnet::IpNet = lab.subnet("node1").parse().unwrap();
    assert!(
        subnet.contains(&address.addr()),
        "{address} not in {subnet}"
    );
    output_ok(
        Command::new("ip")
            .args(["netns", "exec", &pod_netns, "ping", "-c1", "-W5"])
            .arg(lab.pod_ip("node1-pod1")),
    );

    // A restart finds the same content and does not touch the file: a
    // runtime watching the directory sees no event.
    lab.lab_mut().restart("node1").unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.ino(), before.ino(), "the file was replaced");
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());

    // Deleted or changed: back at the next resync (every 10 s).
    std::fs::remove_file(&path).unwrap();
    wait_until(Duration::from_secs(25), "the conflist to come back", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t == FLANNEL_CONFLIST)
    });
    std::fs::write(&path, "{\"name\": \"someone-else\"}\n").unwrap();
    wait_until(
        Duration::from_secs(25),
        "the conflist to be restored",
        || std::fs::read_to_string(&path).is_ok_and(|t| t == FLANNEL_CONFLIST),
    );
    assert!(lab.lab().agent_status("node1").unwrap().ready);
}
