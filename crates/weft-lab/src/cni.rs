//! Pods made the way a kubelet makes them: weft's CNI plugin (`flannel`)
//! run inside the node's namespace with the `CNI_*` environment and the
//! network config on stdin; it delegates to the reference `bridge` and
//! `host-local` plugins in `/usr/lib/cni`.
//!
//! The plugin runs with a cleared environment (plus `PATH`), as container
//! runtimes run it, so nothing from the caller's shell changes its
//! behaviour.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::LabError;
use crate::names::NodePaths;
use crate::netns::spawn_in;

/// The CNI plugin's program name (flannel's, so existing conflists work).
pub const PLUGIN: &str = "flannel";
/// Where Debian's `containernetworking-plugins` installs the delegates.
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/cni";
/// The interface name inside every pod.
pub const POD_IFNAME: &str = "eth0";

/// A CNI operation on one pod.
pub struct PodCall<'a> {
    pub bin_dir: &'a Path,
    /// The node's namespace, where the plugin runs.
    pub node_netns: &'a str,
    pub node_paths: &'a NodePaths,
    /// The pod's name, used as `CNI_CONTAINERID`.
    pub pod: &'a str,
    pub pod_netns: &'a str,
}

/// The network config a kubelet would pass (one conflist entry).
pub fn network_config(paths: &NodePaths) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "cbr0",
        "type": PLUGIN,
        "subnetFile": paths.subnet_env,
        "dataDir": paths.cni_data,
        "ipam": { "dataDir": paths.ipam_data },
        "delegate": { "hairpinMode": true, "isDefaultGateway": true },
    })
    .to_string()
}

/// Checks that the plugin and its delegates are installed, with a remedy.
pub fn check_installed(bin_dir: &Path) -> Result<(), LabError> {
    let plugin = bin_dir.join(PLUGIN);
    if !plugin.is_file() {
        return Err(LabError::Missing(format!(
            "{} (weft's CNI plugin) is missing: build the workspace first (`cargo build --workspace`) \
             or pass --bin-dir",
            plugin.display()
        )));
    }
    for delegate in ["bridge", "host-local"] {
        let path = PathBuf::from(SYSTEM_PLUGIN_DIR).join(delegate);
        if !path.is_file() {
            return Err(LabError::Missing(format!(
                "{} is missing: install Debian's containernetworking-plugins (scripts/install-deps.sh)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// `CNI_COMMAND=ADD`: wires the pod and returns its addresses.
pub fn add(call: &PodCall<'_>) -> Result<Vec<IpNet>, LabError> {
    let output = run(call, "ADD")?;
    if !output.status.success() {
        return Err(failure(call, "ADD", &output));
    }
    parse_result(&output.stdout).map_err(|detail| LabError::Cni {
        pod: call.pod.to_owned(),
        command: "ADD",
        detail,
    })
}

/// `CNI_COMMAND=DEL`: unwires the pod and releases its addresses.
pub fn del(call: &PodCall<'_>) -> Result<(), LabError> {
    let output = run(call, "DEL")?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failure(call, "DEL", &output))
    }
}

fn run(call: &PodCall<'_>, command: &'static str) -> Result<Output, LabError> {
    let plugin = call.bin_dir.join(PLUGIN);
    let cni_path = format!("{}:{SYSTEM_PLUGIN_DIR}", call.bin_dir.display());
    let mut cmd = Command::new(&plugin);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", call.pod)
        .env("CNI_NETNS", crate::netns::netns_path(call.pod_netns))
        .env("CNI_IFNAME", POD_IFNAME)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_in(call.node_netns, &mut cmd)?;
    let config = network_config(call.node_paths);
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading its config closes the pipe;
        // its exit status and output then tell what went wrong.
        let _ = stdin.write_all(config.as_bytes());
    }
    child
        .wait_with_output()
        .map_err(|e| LabError::io(format!("cannot wait for {}", plugin.display()), e))
}

/// A failed call, described with the CNI error object (stdout) and stderr.
fn failure(call: &PodCall<'_>, command: &'static str, output: &Output) -> LabError {
    let mut detail = format!("the plugin exited with {}", output.status);
    if let Ok(err) = serde_json::from_slice::<Value>(&output.stdout) {
        let code = err.get("code").map(Value::to_string).unwrap_or_default();
        let msg = err.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = err
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or_default();
        detail.push_str(&format!(": error {code}: {msg}"));
        if !details.is_empty() {
            detail.push_str(&format!(" ({details})"));
        }
    } else if !output.stdout.is_empty() {
        detail.push_str(&format!(
            "; stdout: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        ));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        detail.push_str(&format!("; stderr: {}", stderr.trim()));
    }
    LabError::Cni {
        pod: call.pod.to_owned(),
        command,
        detail,
    }
}

/// The addresses of a CNI result (`ips[].address`).
fn parse_result(stdout: &[u8]) -> Result<Vec<IpNet>, String> {
    let result: Value = serde_json::from_slice(stdout)
        .map_err(|e| format!("the plugin's result is not JSON ({e})"))?;
    let ips = result
        .get("ips")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the plugin's result has no \"ips\": {result}"))?;
    let addresses: Vec<IpNet> = ips
        .iter()
        .map(|ip| {
            ip.get("address")
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("bad entry in the result's \"ips\": {ip}"))
        })
        .collect::<Result<_, _>>()?;
    if addresses.is_empty() {
        return Err("the plugin's result has no address".to_owned());
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::LabName;

    #[test]
    fn config_names_the_node_paths() {
        let paths = LabName::new("t").unwrap().node_paths("node1");
        let config: Value = serde_json::from_str(&network_config(&paths)).unwrap();
        assert_eq!(config["type"], "flannel");
        assert_eq!(config["cniVersion"], "1.0.0");
        assert_eq!(config["subnetFile"], "/run/weft-lab/t/node1/subnet.env");
        assert_eq!(config["dataDir"], "/run/weft-lab/t/node1/cni-flannel");
        assert_eq!(config["ipam"]["dataDir"], "/run/weft-lab/t/node1/ipam");
        assert_eq!(config["delegate"]["isDefaultGateway"], true);
    }

    #[test]
    fn result_addresses() {
        let out = br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],
            "ips":[{"address":"10.244.1.2/24","gateway":"10.244.1.1","interface":0}]}"#;
        assert_eq!(
            parse_result(out).unwrap(),
            vec!["10.244.1.2/24".parse::<IpNet>().unwrap()]
        );
        assert!(parse_result(br#"{"ips":[]}"#).is_err());
        assert!(parse_result(br#"{"ips":[{"address":"x"}]}"#).is_err());
        assert!(parse_result(b"").is_err());
    }
}
