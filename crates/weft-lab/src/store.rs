//! The lease store the lab's agents share.
//!
//! `local` (the default) is one SQLite file on the shared filesystem: no
//! extra process, nothing to install. `etcd` is a real etcd (Debian's
//! `etcd-server`) in its own namespace on the underlay, reached by the
//! agents over the lab's network exactly as a cluster's agents reach theirs.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;
use crate::error::IoContext as _;
use crate::names::{LabName, STORE_IP};
use crate::netns::{in_netns, spawn_in};
use crate::process;
use crate::state::StoreState;
use crate::topology::{self, Host};

/// etcd's program name.
pub const ETCD: &str = "etcd";
/// The Kubernetes API test server's binary (crate weft-kube-testserver).
pub const KUBE_SERVER: &str = "weft-kube-testserver";
/// flannel's network config key (`<etcd-prefix>/config`, default prefix).
const CONFIG_KEY: &str = "/coreos.com/network/config";

/// Writes net-conf.json for the local store and names the SQLite file.
pub fn prepare_local(lab: &LabName, net_conf: &str) -> Result<StoreState, LabError> {
    let dir = lab.state_dir();
    let net_conf_path = dir.join("net-conf.json");
    std::fs::write(&net_conf_path, format!("{net_conf}\n"))
        .ctx(|| format!("cannot write {}", net_conf_path.display()))?;
    Ok(StoreState::Local {
        path: dir.join("leases.db"),
        net_conf_path,
    })
}

/// Starts etcd in `<lab>-store`, plugged into the underlay at
/// 192.0.2.250, and stores net-conf.json under flannel's config key.
/// Returns the store and etcd's process, which the caller reaps when it
/// stops etcd. Its pid file lets a later `down` find it.
pub fn start_etcd(
    lab: &LabName,
    net_conf: &str,
    timeout: Duration,
) -> Result<(StoreState, Child), LabError> {
    let (etcd, etcdctl) = etcd_tools()?;
    let netns = store_netns(lab)?;
    let dir = lab.state_dir();
    let data_dir = dir.join("etcd");
    let log = dir.join("etcd.log");
    let endpoint = format!("http://{STORE_IP}:2379");
    let mut child = spawn_etcd(&etcd, &netns, &endpoint, &dir)?;
    let state = StoreState::Etcd {
        endpoint: endpoint.clone(),
        netns: netns.clone(),
        address: STORE_IP,
        pid: Some(child.id()),
        log: log.clone(),
        data_dir,
        members: Vec::new(),
    };

    // etcd takes a moment to serve; retry the put until it lands.
    let deadline = Instant::now() + timeout;
    let not_ready = |problem: String| LabError::NotReady {
        who: format!("etcd (netns {netns})"),
        problem,
        log: log.clone(),
        tail: process::tail(&log, 25),
    };
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(not_ready(format!("exited ({exit}) before serving")));
        }
        match put_config(&netns, &etcdctl, &endpoint, net_conf) {
            Ok(()) => return Ok((state, child)),
            Err(e) if Instant::now() >= deadline => {
                return Err(not_ready(format!(
                    "did not accept the network config in time: {e}"
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Starts the etcd process of a lab (its namespace and data exist).
fn spawn_etcd(etcd: &Path, netns: &str, endpoint: &str, dir: &Path) -> Result<Child, LabError> {
    let data_dir = dir.join("etcd");
    let log = dir.join("etcd.log");
    let (out, err) = append_log(&log)?;
    let mut cmd = Command::new(etcd);
    cmd.arg("--name=weft-lab")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!(
            "--listen-client-urls={endpoint},http://127.0.0.1:2379"
        ))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg("--listen-peer-urls=http://127.0.0.1:2380")
        .arg("--initial-advertise-peer-urls=http://127.0.0.1:2380")
        .arg("--initial-cluster=weft-lab=http://127.0.0.1:2380")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    let child = spawn_in(netns, &mut cmd)?;
    process::write_pid_file(&dir.join("etcd.pid"), child.id())?;
    Ok(child)
}

/// Starts a lab's etcd again after [`crate::Lab::stop_store`], on the same
/// data, and waits until it serves. For fault tests.
pub fn restart_etcd(lab: &LabName, timeout: Duration) -> Result<Child, LabError> {
    let etcd =
        find_tool(ETCD).ok_or_else(|| LabError::Missing("etcd is not installed".to_owned()))?;
    let etcdctl = find_tool("etcdctl")
        .ok_or_else(|| LabError::Missing("etcdctl is not installed".to_owned()))?;
    let netns = lab.store_netns();
    let endpoint = format!("http://{STORE_IP}:2379");
    let dir = lab.state_dir();
    let mut child = spawn_etcd(&etcd, &netns, &endpoint, &dir)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(LabError::NotReady {
                who: format!("etcd (netns {netns})"),
                problem: format!("exited ({exit}) after a restart"),
                log: dir.join("etcd.log"),
                tail: process::tail(&dir.join("etcd.log"), 25),
            });
        }
        let healthy = in_netns(&netns, || {
            Command::new(&etcdctl)
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoint}"))
                .args([
                    "--dial-timeout=1s",
                    "--command-timeout=2s",
                    "endpoint",
                    "health",
                ])
                .stdin(Stdio::null())
                .output()
                .ctx(|| "cannot run etcdctl".to_owned())
        })
        .map(|o| o.status.success())
        .unwrap_or(false);
        if healthy {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                who: format!("etcd (netns {netns})"),
                problem: "did not serve again in time".to_owned(),
                log: dir.join("etcd.log"),
                tail: process::tail(&dir.join("etcd.log"), 25),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `etcdctl put <config key> <net-conf>` from inside the store namespace.
pub(crate) fn put_config(
    netns: &str,
    etcdctl: &Path,
    endpoint: &str,
    net_conf: &str,
) -> Result<(), String> {
    let output = in_netns(netns, || {
        Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("--dial-timeout=1s")
            .arg("--command-timeout=2s")
            .arg("put")
            .arg(CONFIG_KEY)
            .arg(net_conf)
            .stdin(Stdio::null())
            .output()
            .ctx(|| format!("cannot run {}", etcdctl.display()))
    })
    .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Finds a program on `PATH`, then in the usual system directories (root's
/// `PATH` under sudo may lack `/usr/sbin`).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Starts weft's Kubernetes API test server in its own namespace on the
/// underlay at 192.0.2.250:6443, with a Node per lab node (podCIDRs
/// allocated as kube-controller-manager does), and writes net-conf.json
/// where the agents' `--net-config-path` points (the ConfigMap's file).
pub fn start_kube(
    lab: &LabName,
    bin_dir: &Path,
    net_conf: &str,
    nodes: u32,
    family: crate::IpFamily,
    timeout: Duration,
) -> Result<(StoreState, Child), LabError> {
    let server = bin_dir.join(KUBE_SERVER);
    if !server.exists() {
        return Err(LabError::Missing(format!(
            "{} is missing: build the workspace (cargo build --workspace)",
            server.display()
        )));
    }
    let netns = store_netns(lab)?;
    let dir = lab.state_dir();
    let net_conf_path = dir.join("net-conf.json");
    std::fs::write(&net_conf_path, net_conf)
        .ctx(|| format!("cannot write {}", net_conf_path.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let log = dir.join("kube-server.log");
    let (out, err) = append_log(&log)?;
    let listen = format!("{STORE_IP}:6443");
    let mut cmd = Command::new(&server);
    cmd.arg(format!("--listen={listen}"))
        .arg(format!(
            "--cluster-cidr={}",
            match family {
                crate::IpFamily::Ipv4 => crate::names::CLUSTER_NETWORK.to_owned(),
                crate::IpFamily::Ipv6 => crate::names::CLUSTER_NETWORK_V6.to_owned(),
                crate::IpFamily::Dual => format!(
                    "{},{}",
                    crate::names::CLUSTER_NETWORK,
                    crate::names::CLUSTER_NETWORK_V6
                ),
            }
        ))
        .arg(format!("--kubeconfig-out={}", kubeconfig.display()));
    for i in 1..=nodes {
        cmd.arg(format!("--node=node{i}=192.0.2.{i}"));
    }
    cmd.current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    let mut child = spawn_in(&netns, &mut cmd)?;
    process::write_pid_file(&dir.join(format!("{KUBE_SERVER}.pid")), child.id())?;
    let deadline = Instant::now() + timeout;
    while !kubeconfig.exists() {
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(LabError::NotReady {
                who: format!("the Kubernetes API test server (netns {netns})"),
                problem: format!("exited ({exit}) before serving"),
                log: log.clone(),
                tail: process::tail(&log, 25),
            });
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                who: format!("the Kubernetes API test server (netns {netns})"),
                problem: "did not write its kubeconfig in time".to_owned(),
                log: log.clone(),
                tail: process::tail(&log, 25),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = StoreState::Kube(crate::state::KubeStore {
        endpoint: format!("http://{listen}"),
        netns,
        kubeconfig,
        net_conf_path,
        pid: Some(child.id()),
        log,
    });
    Ok((state, child))
}

/// etcd and etcdctl from Debian's packages, or what to install.
pub(crate) fn etcd_tools() -> Result<(std::path::PathBuf, std::path::PathBuf), LabError> {
    let etcd = find_tool(ETCD).ok_or_else(|| {
        LabError::Missing(
            "etcd is not installed: install Debian's etcd-server and etcd-client (scripts/install-deps.sh) \
             or use --store local"
                .to_owned(),
        )
    })?;
    let etcdctl = find_tool("etcdctl").ok_or_else(|| {
        LabError::Missing(
            "etcdctl is not installed: install Debian's etcd-client (scripts/install-deps.sh)"
                .to_owned(),
        )
    })?;
    Ok((etcd, etcdctl))
}

/// The store's namespace, plugged into the underlay at the store's
/// addresses: where the one etcd or the API server listens.
fn store_netns(lab: &LabName) -> Result<String, LabError> {
    let netns = lab.store_netns();
    topology::create_host_netns(&netns)?;
    topology::plug(
        &lab.underlay_netns(),
        &Host {
            netns: &netns,
            port: "st",
            address: STORE_IP,
            address_v6: Some(crate::names::STORE_IP_V6),
            gateway: None,
        },
    )?;
    Ok(netns)
}

/// `log` opened for appending, twice: a child's stdout and stderr, so that
/// a restarted process adds to what the one before it wrote.
pub(crate) fn append_log(log: &Path) -> Result<(std::fs::File, std::fs::File), LabError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ctx(|| format!("cannot open {}", log.display()))?;
    let err = out
        .try_clone()
        .ctx(|| format!("cannot reopen {}", log.display()))?;
    Ok((out, err))
}
