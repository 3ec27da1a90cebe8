//! A multi-member etcd for the lab (`up --store etcd --etcd-members N`).
//!
//! Why members get namespaces of their own: an operator's etcd members are
//! separate machines, so each member here is a separate host on the
//! underlay (`<lab>-etcd<k>`, 192.0.2.<240+k>), peers talking over the
//! underlay too. Killing one, or cutting its cable, then does to the agents
//! exactly what losing a member does in a cluster: their connections to it
//! break or go silent while the others keep serving.
//!
//! The single etcd of `<lab>-store` (the default) is left as `store.rs`
//! makes it, so existing labs and tests see no change.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::LabError;
use crate::error::IoContext as _;
use crate::names::{self, LabName, MAX_ETCD_MEMBERS};
use crate::netns::{in_netns, spawn_in, with_netlink};
use crate::process::{self, Expected};
use crate::state::{EtcdMember, StoreState};
use crate::store::{ETCD, put_config};
use crate::topology::{self, Host};

/// Checks `--etcd-members` against the store kind.
pub fn validate_members(store: crate::StoreKind, members: u32) -> Result<(), LabError> {
    if !(1..=MAX_ETCD_MEMBERS).contains(&members) {
        return Err(LabError::Invalid(format!(
            "an etcd of 1 to {MAX_ETCD_MEMBERS} members, not {members}"
        )));
    }
    if members > 1 && store != crate::StoreKind::Etcd {
        return Err(LabError::Invalid(format!(
            "--etcd-members {members} needs --store etcd (the {store} store has no members)"
        )));
    }
    Ok(())
}

/// The members' records, before any runs.
fn plan(lab: &LabName, count: u32) -> Result<Vec<EtcdMember>, LabError> {
    let dir = lab.state_dir();
    (1..=count)
        .map(|k| {
            let name = names::etcd_member_name(k);
            let address = names::etcd_member_ip(k)
                .ok_or_else(|| LabError::Invalid(format!("etcd member {k} is out of range")))?;
            Ok(EtcdMember {
                netns: lab.netns_of(&name),
                address,
                client_url: format!("http://{address}:2379"),
                peer_url: format!("http://{address}:2380"),
                port: format!("e{k}"),
                data_dir: dir.join(&name),
                log: dir.join(format!("{name}.log")),
                pid: None,
                name,
            })
        })
        .collect()
}

/// Starts `count` members, each in its own namespace plugged into the
/// underlay, all at once (a member alone has no quorum and would wait for
/// the others), then stores net-conf.json under flannel's config key once
/// the cluster has a leader. Returns the store and each member's process.
pub fn start(
    lab: &LabName,
    net_conf: &str,
    count: u32,
    timeout: Duration,
) -> Result<(StoreState, Vec<(String, Child)>), LabError> {
    let (etcd, etcdctl) = crate::store::etcd_tools()?;
    let mut members = plan(lab, count)?;
    let initial = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for member in &mut members {
        topology::create_host_netns(&member.netns)?;
        topology::plug(
            &lab.underlay_netns(),
            &Host {
                netns: &member.netns,
                port: &member.port,
                address: member.address,
                address_v6: None,
                gateway: None,
            },
        )?;
        let child = spawn(&etcd, lab, member, &initial)?;
        member.pid = Some(child.id());
        children.push((member.name.clone(), child));
    }
    let endpoints = endpoints(&members);
    let deadline = Instant::now() + timeout;
    loop {
        for (name, child) in &mut children {
            if let Ok(Some(exit)) = child.try_wait() {
                let log = lab.state_dir().join(format!("{name}.log"));
                return Err(LabError::NotReady {
                    who: format!("etcd member {name}"),
                    problem: format!("exited ({exit}) before the cluster formed"),
                    tail: process::tail(&log, 25),
                    log,
                });
            }
        }
        match put_config(&lab.underlay_netns(), &etcdctl, &endpoints, net_conf) {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => {
                let log = members[0].log.clone();
                return Err(LabError::NotReady {
                    who: format!("etcd ({count} members)"),
                    problem: format!("did not accept the network config in time: {e}"),
                    tail: process::tail(&log, 25),
                    log,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let first = &members[0];
    let state = StoreState::Etcd {
        endpoint: endpoints,
        netns: first.netns.clone(),
        address: first.address,
        pid: first.pid,
        log: first.log.clone(),
        data_dir: first.data_dir.clone(),
        members,
    };
    Ok((state, children))
}

/// Every member's client URL, comma-separated, as an operator gives them
/// to `--etcd-endpoints`.
pub fn endpoints(members: &[EtcdMember]) -> String {
    members
        .iter()
        .map(|m| m.client_url.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts one member's etcd. `initial` is the `--initial-cluster` list; on
/// a restart etcd ignores it and rejoins with the membership its data
/// directory records.
fn spawn(
    etcd: &Path,
    lab: &LabName,
    member: &EtcdMember,
    initial: &str,
) -> Result<Child, LabError> {
    let (out, err) = crate::store::append_log(&member.log)?;
    let mut cmd = Command::new(etcd);
    cmd.arg(format!("--name={}", member.name))
        .arg(format!("--data-dir={}", member.data_dir.display()))
        .arg(format!(
            "--listen-client-urls={},http://127.0.0.1:2379",
            member.client_url
        ))
        .arg(format!("--advertise-client-urls={}", member.client_url))
        .arg(format!("--listen-peer-urls={}", member.peer_url))
        .arg(format!("--initial-advertise-peer-urls={}", member.peer_url))
        .arg(format!("--initial-cluster={initial}"))
        .arg(format!("--initial-cluster-token={lab}"))
        .arg("--initial-cluster-state=new")
        .current_dir(lab.state_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    let child = spawn_in(&member.netns, &mut cmd)?;
    process::write_pid_file(&pid_file(lab, member), child.id())?;
    Ok(child)
}

fn pid_file(lab: &LabName, member: &EtcdMember) -> std::path::PathBuf {
    lab.state_dir().join(format!("{}.pid", member.name))
}

/// How a member's process is recognised in `/proc`: etcd, with its own
/// data directory among its arguments.
fn running_pid(lab: &LabName, member: &EtcdMember) -> Option<i32> {
    let marker = format!("--data-dir={}", member.data_dir.display());
    let expected = Expected {
        program: ETCD,
        marker: &marker,
    };
    member
        .pid
        .and_then(|p| i32::try_from(p).ok())
        .into_iter()
        .chain(process::read_pid_file(&pid_file(lab, member)))
        .find(|p| expected.matches(*p))
        // A member whose recorded pid went stale (seen once under heavy
        // load: the kill found nothing, and the restart then failed with
        // "address already in use"): its data directory identifies it.
        .or_else(|| expected.find_all().into_iter().next())
}

/// Whether a member's process runs.
pub fn is_running(lab: &LabName, member: &EtcdMember) -> bool {
    running_pid(lab, member).is_some()
}

/// SIGKILLs a member, as a crash or a power cut would; its data stays.
/// Returns false when it was not running.
pub fn kill(lab: &LabName, member: &mut EtcdMember) -> Result<bool, LabError> {
    let Some(pid) = running_pid(lab, member) else {
        member.pid = None;
        return Ok(false);
    };
    process::signal(pid, Signal::SIGKILL)?;
    if !process::wait_gone(pid, Duration::from_secs(10)) {
        return Err(LabError::Invalid(format!(
            "etcd member {} (pid {pid}) survived SIGKILL",
            member.name
        )));
    }
    member.pid = None;
    Ok(true)
}

/// Starts a stopped member on its data and waits until it serves
/// (`etcdctl endpoint health` on it: it has rejoined a cluster with a
/// leader). A member that already runs is left alone.
pub fn restart(
    lab: &LabName,
    members: &mut [EtcdMember],
    name: &str,
    timeout: Duration,
) -> Result<Option<Child>, LabError> {
    let (etcd, etcdctl) = crate::store::etcd_tools()?;
    let initial = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    let member = find_mut(members, name)?;
    if is_running(lab, member) {
        return Ok(None);
    }
    let mut child = spawn(&etcd, lab, member, &initial)?;
    member.pid = Some(child.id());
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            member.pid = None;
            return Err(LabError::NotReady {
                who: format!("etcd member {name}"),
                problem: format!("exited ({exit}) after a restart"),
                log: member.log.clone(),
                tail: process::tail(&member.log, 25),
            });
        }
        if healthy(&lab.underlay_netns(), &etcdctl, &member.client_url) {
            return Ok(Some(child));
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady {
                who: format!("etcd member {name}"),
                problem: "did not serve again in time (does the cluster have quorum?)".to_owned(),
                log: member.log.clone(),
                tail: process::tail(&member.log, 25),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn healthy(netns: &str, etcdctl: &Path, endpoint: &str) -> bool {
    etcdctl_output(netns, etcdctl, endpoint, &["endpoint", "health"])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn etcdctl_output(
    netns: &str,
    etcdctl: &Path,
    endpoints: &str,
    args: &[&str],
) -> Result<std::process::Output, LabError> {
    in_netns(netns, || {
        Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(["--dial-timeout=1s", "--command-timeout=2s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ctx(|| format!("cannot run {}", etcdctl.display()))
    })
}

/// The member that leads, as the members reachable from the underlay
/// report it (`etcdctl endpoint status -w json`: the one whose own id is
/// the leader id). `None` while there is no leader (an election, or no
/// quorum).
pub fn leader(lab: &LabName, members: &[EtcdMember]) -> Result<Option<String>, LabError> {
    let (_, etcdctl) = crate::store::etcd_tools()?;
    // Killed members are left out: etcdctl would spend its dial timeout
    // on each.
    let running: Vec<EtcdMember> = members
        .iter()
        .filter(|m| is_running(lab, m))
        .cloned()
        .collect();
    if running.is_empty() {
        return Ok(None);
    }
    let out = etcdctl_output(
        &lab.underlay_netns(),
        &etcdctl,
        &endpoints(&running),
        &["endpoint", "status", "-w", "json"],
    )?;
    // Unreachable members make etcdctl exit non-zero but it still prints
    // the others' status.
    Ok(leader_from_status(&String::from_utf8_lossy(&out.stdout))
        .and_then(|url| members.iter().find(|m| m.client_url == url))
        .map(|m| m.name.clone()))
}

/// The endpoint URL of the member that calls itself leader in etcdctl's
/// JSON status list.
fn leader_from_status(json: &str) -> Option<String> {
    let list: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    list.as_array()?.iter().find_map(|entry| {
        let status = entry.get("Status")?;
        let own = status.get("header")?.get("member_id")?.as_u64()?;
        let leader = status.get("leader")?.as_u64()?;
        (own == leader && leader != 0)
            .then(|| entry.get("Endpoint")?.as_str().map(str::to_owned))
            .flatten()
    })
}

/// Sets a member's port on the underlay bridge down (`partitioned`) or up:
/// its cable is cut, the process keeps running and keeps its connections
/// open, as when a switch port or a machine's NIC fails.
pub fn set_partitioned(
    lab: &LabName,
    member: &EtcdMember,
    partitioned: bool,
) -> Result<(), LabError> {
    let underlay = lab.underlay_netns();
    let port = member.port.clone();
    with_netlink(&underlay, |nl| async move {
        let index = match nl.link_by_name(&port).await {
            Ok(Some(link)) => link.index,
            Ok(None) => {
                return Err(LabError::Invalid(format!(
                    "the underlay has no port {port}"
                )));
            }
            Err(e) => return Err(LabError::netlink(format!("cannot look up {port}"), e)),
        };
        let done = if partitioned {
            nl.set_link_down(index).await
        } else {
            nl.set_link_up(index).await
        };
        done.map_err(|e| LabError::netlink(format!("cannot set {port} up or down"), e))
    })
}

/// Whether a member's port on the underlay is down.
pub fn is_partitioned(lab: &LabName, member: &EtcdMember) -> Result<bool, LabError> {
    let port = member.port.clone();
    with_netlink(&lab.underlay_netns(), |nl| async move {
        match nl.link_by_name(&port).await {
            Ok(Some(link)) => Ok(!link.admin_up),
            Ok(None) => Ok(true),
            Err(e) => Err(LabError::netlink(format!("cannot look up {port}"), e)),
        }
    })
}

pub fn find_mut<'a>(
    members: &'a mut [EtcdMember],
    name: &str,
) -> Result<&'a mut EtcdMember, LabError> {
    let known = members
        .iter()
        .map(|m| m.name.clone())
        .collect::<Vec<_>>()
        .join(", ");
    members
        .iter_mut()
        .find(|m| m.name == name)
        .ok_or_else(|| LabError::Invalid(format!("no etcd member {name:?}; the lab has: {known}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_the_member_whose_id_is_the_leader_id() {
        let json = r#"[
          {"Endpoint":"http://192.0.2.241:2379","Status":{"header":{"member_id":11,"raft_term":2},"leader":22}},
          {"Endpoint":"http://192.0.2.242:2379","Status":{"header":{"member_id":22,"raft_term":2},"leader":22}}
        ]"#;
        assert_eq!(
            leader_from_status(json).as_deref(),
            Some("http://192.0.2.242:2379")
        );
        let no_leader =
            r#"[{"Endpoint":"http://a:2379","Status":{"header":{"member_id":11},"leader":0}}]"#;
        assert_eq!(leader_from_status(no_leader), None);
        assert_eq!(leader_from_status(""), None);
    }

    #[test]
    fn members_count_is_checked_against_the_store() {
        use crate::StoreKind;
        assert!(validate_members(StoreKind::Etcd, 3).is_ok());
        assert!(validate_members(StoreKind::Local, 1).is_ok());
        assert!(validate_members(StoreKind::Local, 3).is_err());
        assert!(validate_members(StoreKind::Etcd, 0).is_err());
        assert!(validate_members(StoreKind::Etcd, MAX_ETCD_MEMBERS + 1).is_err());
    }

    #[test]
    fn members_get_their_own_addresses_and_namespaces() {
        let lab = LabName::new("t").unwrap();
        let members = plan(&lab, 3).unwrap();
        assert_eq!(members[2].name, "etcd3");
        assert_eq!(members[2].netns, "t-etcd3");
        assert_eq!(members[2].client_url, "http://192.0.2.243:2379");
        assert_eq!(
            endpoints(&members),
            "http://192.0.2.241:2379,http://192.0.2.242:2379,http://192.0.2.243:2379"
        );
    }
}
